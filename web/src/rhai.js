// The Rhai script editor: CodeMirror 6 with a Rhai highlighter (a stream tokenizer: keywords,
// nudge's functions, strings incl. `templates`, numbers, comments), a linter that compiles
// the draft on the server as you type and marks the error and the schema warnings (an
// `event.data` field the triggering types' schemas lack) at their line and column, and
// completion of `event.data.` with the fields those schemas know.
import { EditorState } from "@codemirror/state";
import {
  EditorView, keymap, lineNumbers, highlightActiveLine, highlightActiveLineGutter, drawSelection,
} from "@codemirror/view";
import { defaultKeymap, history, historyKeymap, indentWithTab } from "@codemirror/commands";
import {
  StreamLanguage, syntaxHighlighting, defaultHighlightStyle, bracketMatching, indentOnInput,
} from "@codemirror/language";
import { linter, lintGutter } from "@codemirror/lint";
import { autocompletion, closeBrackets, closeBracketsKeymap } from "@codemirror/autocomplete";
import { searchKeymap } from "@codemirror/search";

const KEYWORDS = new Set([
  "let", "const", "if", "else", "switch", "while", "loop", "for", "in", "do", "until", "break",
  "continue", "return", "throw", "try", "catch", "fn", "private", "true", "false", "this", "is_def_var",
]);
// nudge's functions besides one per action channel (those come from the server's channel table,
// `GET /api/session`'s `channels`).
const FUNCTIONS = [
  "after", "cancel", "count", "last_seen", "since", "set_attribute", "plugin", "print", "debug",
];

const rhai = (channels) => {
  const NUDGE = new Set([...channels, ...FUNCTIONS]);
  return StreamLanguage.define({
    name: "rhai",
    startState: () => ({ inBlockComment: false, inTemplate: false }),
    token(stream, state) {
      if (state.inBlockComment) {
        if (stream.skipTo("*/")) {
          stream.match("*/");
          state.inBlockComment = false;
        } else stream.skipToEnd();
        return "comment";
      }
      if (state.inTemplate) {
        if (stream.skipTo("`")) {
          stream.next();
          state.inTemplate = false;
        } else stream.skipToEnd();
        return "string";
      }
      if (stream.eatSpace()) return null;
      if (stream.match("//")) {
        stream.skipToEnd();
        return "comment";
      }
      if (stream.match("/*")) {
        state.inBlockComment = true;
        return "comment";
      }
      if (stream.match(/^"(?:[^"\\]|\\.)*"?/)) return "string";
      if (stream.match(/^'(?:[^'\\]|\\.)'/)) return "string";
      if (stream.peek() === "`") {
        stream.next();
        state.inTemplate = true;
        return "string";
      }
      if (stream.match(/^#\{/)) return "bracket";
      if (stream.match(/^\d[\d_]*(\.\d+)?([eE][+-]?\d+)?/)) return "number";
      const word = stream.match(/^[A-Za-z_][A-Za-z0-9_]*/);
      if (word) {
        const text = word[0];
        if (KEYWORDS.has(text)) return "keyword";
        if (NUDGE.has(text)) return "function(variableName)";
        if (text === "event" || text === "profile") return "atom";
        return "variableName";
      }
      if (stream.match(/^(\?\?|==|!=|<=|>=|&&|\|\||=>|[-+*/%=<>!?.:])/)) return "operator";
      stream.next();
      return null;
    },
    languageData: { commentTokens: { line: "//", block: { open: "/*", close: "*/" } } },
  });
};

// Position of a 1-based line/column in the document, clamped inside it.
function position(doc, line, column) {
  const l = doc.line(Math.min(Math.max(line, 1), doc.lines));
  return Math.min(l.from + Math.max(column - 1, 0), l.to);
}

// The span a diagnostic at `from` covers: the dotted name starting there (`event.data.totl`).
function span(doc, from) {
  const line = doc.lineAt(from);
  const name = /^[A-Za-z0-9_.]*/.exec(doc.sliceString(from, line.to))[0];
  return Math.min(from + Math.max(name.length, 1), doc.length);
}

function warningDiagnostic(doc, w) {
  const from = w.line ? position(doc, w.line, w.column ?? 1) : 0;
  const to = Math.max(span(doc, from), from);
  const diagnostic = { from, to, severity: "warning", message: w.message, source: "schema" };
  if (w.suggestion) {
    diagnostic.actions = [{
      name: `Use ${w.suggestion}`,
      // Replaces the last segment of the name (`totl` in `event.data.totl`).
      apply(view, at, end) {
        const text = view.state.sliceDoc(at, end);
        const start = at + text.lastIndexOf(".") + 1;
        view.dispatch({ changes: { from: start, to: end, insert: w.suggestion } });
      },
    }];
  }
  return diagnostic;
}

/**
 * Creates the editor in `parent`, highlighting the rule functions of `channels`.
 * `check(script)` resolves to `{error, warnings, fields}`: `error` null (compiles) or
 * {message, line, column}; `warnings` [{message, line, column, suggestion?}]; `fields` the dotted
 * paths of `event.data` the triggering types' schemas know (kept from the last answer that has
 * them). `onChange(script)` hears every edit, `onDiagnostics({error, warnings})` every check.
 */
export function createEditor(parent, { doc, readOnly, channels, check, onChange, onDiagnostics }) {
  let fields = [];
  const lint = linter(
    async (view) => {
      const { error = null, warnings = [], fields: known } = (await check(view.state.doc.toString())) ?? {};
      if (Array.isArray(known)) fields = known;
      onDiagnostics?.({ error, warnings });
      const doc = view.state.doc;
      const diagnostics = warnings.map((w) => warningDiagnostic(doc, w));
      if (error) {
        const from = error.line ? position(doc, error.line, error.column ?? 1) : 0;
        const to = Math.min(from + 1, doc.length);
        diagnostics.push({ from, to: Math.max(to, from), severity: "error", message: error.message });
      }
      return diagnostics;
    },
    { delay: 300 },
  );
  // `event.data.` completes with the schema fields; typing on filters them.
  const dataFields = (context) => {
    const before = context.matchBefore(/\bevent\.data\.[A-Za-z0-9_.]*$/);
    if (!before || fields.length === 0) return null;
    return {
      from: before.from + "event.data.".length,
      options: fields.map((f) => ({ label: f, type: "property", detail: "schema" })),
      validFor: /^[A-Za-z0-9_.]*$/,
    };
  };
  const extensions = [
    lineNumbers(),
    highlightActiveLineGutter(),
    highlightActiveLine(),
    drawSelection(),
    history(),
    bracketMatching(),
    closeBrackets(),
    indentOnInput(),
    rhai(channels),
    syntaxHighlighting(defaultHighlightStyle),
    keymap.of([...closeBracketsKeymap, ...defaultKeymap, ...historyKeymap, ...searchKeymap, indentWithTab]),
    EditorView.lineWrapping,
    EditorView.contentAttributes.of({ "aria-label": "Rule script (Rhai)" }),
    EditorView.updateListener.of((update) => {
      if (update.docChanged) onChange?.(update.state.doc.toString());
    }),
    EditorState.readOnly.of(!!readOnly),
    EditorView.editable.of(!readOnly),
  ];
  if (!readOnly) extensions.push(lint, lintGutter(), autocompletion({ override: [dataFields] }));
  return new EditorView({ parent, state: EditorState.create({ doc, extensions }) });
}

export function setDoc(view, text) {
  view.dispatch({ changes: { from: 0, to: view.state.doc.length, insert: text } });
}
