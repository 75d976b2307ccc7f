// The Rhai script editor: CodeMirror 6 with a Rhai highlighter (a stream tokenizer: keywords,
// nudge's functions, strings incl. `templates`, numbers, comments) and a linter that compiles
// the draft on the server as you type and marks the error at its line and column.
import { EditorState } from "@codemirror/state";
import {
  EditorView, keymap, lineNumbers, highlightActiveLine, highlightActiveLineGutter, drawSelection,
} from "@codemirror/view";
import { defaultKeymap, history, historyKeymap, indentWithTab } from "@codemirror/commands";
import {
  StreamLanguage, syntaxHighlighting, defaultHighlightStyle, bracketMatching, indentOnInput,
} from "@codemirror/language";
import { linter, lintGutter } from "@codemirror/lint";
import { closeBrackets, closeBracketsKeymap } from "@codemirror/autocomplete";
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

/**
 * Creates the editor in `parent`, highlighting the rule functions of `channels`. `check(script)` resolves to null (compiles) or an error
 * {message, line, column}; `onChange(script)` hears every edit.
 */
export function createEditor(parent, { doc, readOnly, channels, check, onChange, onDiagnostics }) {
  const lint = linter(
    async (view) => {
      const error = await check(view.state.doc.toString());
      onDiagnostics?.(error);
      if (!error) return [];
      const from = error.line ? position(view.state.doc, error.line, error.column ?? 1) : 0;
      const to = Math.min(from + 1, view.state.doc.length);
      return [{ from, to: Math.max(to, from), severity: "error", message: error.message }];
    },
    { delay: 300 },
  );
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
  if (!readOnly) extensions.push(lint, lintGutter());
  return new EditorView({ parent, state: EditorState.create({ doc, extensions }) });
}

export function setDoc(view, text) {
  view.dispatch({ changes: { from: 0, to: view.state.doc.length, insert: text } });
}
