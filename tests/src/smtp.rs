//! A small SMTP server for e-mail tests (RFC 5321 as relays speak it: greeting, EHLO/HELO,
//! MAIL, RCPT, DATA with dot-stuffing, RSET, NOOP, QUIT) on a random loopback port. It keeps
//! every message it accepts and answers as the test sets: accept, refuse each recipient with a
//! given code (`451` transient, `550` permanent), or stall after the message (no answer).

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// How the server answers the next recipients and messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Accept,
    /// `RCPT TO` answered with this code.
    Refuse(u16),
    /// The message is read, and no answer ever comes.
    Stall,
}

/// One accepted message.
#[derive(Debug, Clone)]
pub struct Mail {
    pub from: String,
    pub to: Vec<String>,
    /// The message as sent (headers and body, CRLF line ends, dot-stuffing undone).
    pub data: Vec<u8>,
}

impl Mail {
    pub fn parsed(&self) -> mail_parser::Message<'_> {
        mail_parser::MessageParser::default()
            .parse(&self.data)
            .expect("a parsable message")
    }

    /// A header's value as sent (unfolded, trimmed).
    pub fn header(&self, name: &str) -> Option<String> {
        let text = String::from_utf8_lossy(&self.data);
        let headers = text.split("\r\n\r\n").next().unwrap_or_default();
        let unfolded = headers.replace("\r\n ", " ").replace("\r\n\t", " ");
        let prefix = format!("{}:", name.to_ascii_lowercase());
        unfolded
            .split("\r\n")
            .find(|line| line.to_ascii_lowercase().starts_with(&prefix))
            .map(|line| line[prefix.len()..].trim().to_owned())
    }
}

struct Shared {
    answer: Mutex<Answer>,
    received: Mutex<Vec<Mail>>,
    /// Recipients seen by `RCPT TO`, accepted or not.
    attempts: Mutex<usize>,
}

/// The server, serving until dropped.
pub struct SmtpServer {
    shared: Arc<Shared>,
    pub port: u16,
    server: tokio::task::JoinHandle<()>,
}

impl SmtpServer {
    pub async fn start() -> SmtpServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind SMTP");
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Shared {
            answer: Mutex::new(Answer::Accept),
            received: Mutex::new(Vec::new()),
            attempts: Mutex::new(0),
        });
        let serving = shared.clone();
        let server = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(session(stream, serving.clone()));
            }
        });
        SmtpServer {
            shared,
            port,
            server,
        }
    }

    /// `smtp://127.0.0.1:<port>`, for `NUDGE_SMTP_URL`.
    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    pub fn answer(&self, answer: Answer) {
        *self.shared.answer.lock().unwrap() = answer;
    }

    pub fn received(&self) -> Vec<Mail> {
        self.shared.received.lock().unwrap().clone()
    }

    /// How many messages it accepted.
    pub fn count(&self) -> usize {
        self.shared.received.lock().unwrap().len()
    }

    /// Recipients offered so far (each is one delivery attempt).
    pub fn attempts(&self) -> usize {
        *self.shared.attempts.lock().unwrap()
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn session(stream: TcpStream, shared: Arc<Shared>) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    write.write_all(b"220 test.example ESMTP ready\r\n").await?;
    let mut from = String::new();
    let mut to = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let command = line.trim_end().to_owned();
        let verb = command
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_ascii_uppercase();
        let reply: String = match verb.as_str() {
            "EHLO" => "250-test.example\r\n250-8BITMIME\r\n250 SMTPUTF8".into(),
            "HELO" => "250 test.example".into(),
            "MAIL" => {
                from = address(&command);
                to.clear();
                "250 OK".into()
            }
            "RCPT" => {
                *shared.attempts.lock().unwrap() += 1;
                let answer = *shared.answer.lock().unwrap();
                match answer {
                    Answer::Refuse(code) => format!("{code} 5.7.1 refused by the test"),
                    Answer::Accept | Answer::Stall => {
                        to.push(address(&command));
                        "250 OK".into()
                    }
                }
            }
            "DATA" => {
                write.write_all(b"354 go ahead\r\n").await?;
                let data = read_data(&mut lines).await?;
                if *shared.answer.lock().unwrap() == Answer::Stall {
                    // Hold the connection without a word until the client gives up.
                    tokio::time::sleep(std::time::Duration::from_secs(3_600)).await;
                    return Ok(());
                }
                shared.received.lock().unwrap().push(Mail {
                    from: from.clone(),
                    to: std::mem::take(&mut to),
                    data,
                });
                "250 OK queued".into()
            }
            "RSET" => {
                from.clear();
                to.clear();
                "250 OK".into()
            }
            "NOOP" => "250 OK".into(),
            "QUIT" => {
                write.write_all(b"221 bye\r\n").await?;
                return Ok(());
            }
            _ => "502 command not implemented".into(),
        };
        write.write_all(format!("{reply}\r\n").as_bytes()).await?;
    }
}

/// The address between `<` and `>` of `MAIL FROM:<…>` or `RCPT TO:<…>`.
fn address(command: &str) -> String {
    let start = command.find('<').map_or(0, |i| i + 1);
    let end = command.rfind('>').unwrap_or(command.len());
    command[start..end.max(start)].to_owned()
}

/// The message up to the line with a single `.`, dot-stuffing undone.
async fn read_data(
    lines: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
) -> std::io::Result<Vec<u8>> {
    let mut data = Vec::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        if lines.read_until(b'\n', &mut line).await? == 0 {
            return Ok(data);
        }
        if line == b".\r\n" || line == b".\n" {
            return Ok(data);
        }
        let unstuffed = if line.starts_with(b"..") {
            &line[1..]
        } else {
            &line[..]
        };
        data.extend_from_slice(unstuffed);
    }
}
