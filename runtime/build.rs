//! Builds the web UI (`web/`, npm + esbuild) into `OUT_DIR/web` and writes `assets.rs`, the
//! table `http::ui` serves from, so the binary carries the UI and needs no Node at run time.
//! `NUDGE_WEB_DIST=<dir>` embeds an already-built directory instead.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::{env, fs};

fn run(dir: &Path, program: &str, args: &[&str]) {
    let status = Command::new(program)
        .args(args)
        .current_dir(dir)
        .status()
        .unwrap_or_else(|e| {
            panic!(
                "the web UI is built with Node.js and npm: could not run `{program}` ({e}); \
                 install them (apt install nodejs npm) or set NUDGE_WEB_DIST to a built UI"
            )
        });
    assert!(
        status.success(),
        "`{program} {}` failed in {}",
        args.join(" "),
        dir.display()
    );
}

fn files(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir)
        .expect("readable asset directory")
        .flatten()
    {
        let path = entry.path();
        if path.is_dir() {
            files(&path, found);
        } else {
            found.push(path);
        }
    }
}

fn mime(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("json") => "application/json",
        Some("txt") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let web = manifest.join("../web");
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets it"));
    println!("cargo:rerun-if-env-changed=NUDGE_WEB_DIST");
    let dist = match env::var("NUDGE_WEB_DIST") {
        Ok(dir) => PathBuf::from(dir),
        Err(_) => {
            for watched in ["src", "package.json", "package-lock.json", "build.mjs"] {
                println!("cargo:rerun-if-changed={}", web.join(watched).display());
            }
            if !web.join("node_modules/.package-lock.json").exists() {
                run(
                    &web,
                    "npm",
                    &["ci", "--no-audit", "--no-fund", "--loglevel=error"],
                );
            }
            let dist = out.join("web");
            run(
                &web,
                "node",
                &["build.mjs", dist.to_str().expect("UTF-8 path")],
            );
            dist
        }
    };
    let mut found = Vec::new();
    files(&dist, &mut found);
    found.sort();
    let mut table = String::from("pub static ASSETS: &[(&str, &str, &[u8])] = &[\n");
    for path in &found {
        let relative = path.strip_prefix(&dist).expect("under dist");
        let url = format!("/{}", relative.to_string_lossy().replace('\\', "/"));
        table.push_str(&format!(
            "    ({url:?}, {:?}, include_bytes!({:?})),\n",
            mime(path),
            path.display().to_string()
        ));
    }
    table.push_str("];\n");
    fs::write(out.join("assets.rs"), table).expect("writable OUT_DIR");
}
