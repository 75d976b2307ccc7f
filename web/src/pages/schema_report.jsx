// The violations report of one event type (from `GET /api/schema-violations`): how many events
// were warned about and blocked, by kind of violation, per hour, and the latest samples with
// the offending values marked in the event's data; blocked events are dead letters of kind
// `schema_violation`, linked for re-driving.
import { ago, can } from "../api.js";
import { Link } from "../main.jsx";

// Kinds whose instance path names the object something is missing from, or the whole event:
// marking it would mark everything, so the message is marked instead.
const MESSAGE_ONLY = new Set(["missing_required", "unplanned", "unknown_schema_version"]);

const escapeToken = (key) => String(key).replaceAll("~", "~0").replaceAll("/", "~1");
const unescapeToken = (token) => token.replaceAll("~1", "/").replaceAll("~0", "~");

// Whether the JSON pointer names a value inside `data`.
function resolves(data, pointer) {
  if (!pointer) return true;
  if (!pointer.startsWith("/")) return false;
  let at = data;
  for (const token of pointer.slice(1).split("/").map(unescapeToken)) {
    if (at === null || typeof at !== "object" || !Object.prototype.hasOwnProperty.call(at, token)) return false;
    at = at[token];
  }
  return true;
}

// Whether a violation is shown by marking its value in the data (else its message is marked).
const marksValue = (v, data) => !MESSAGE_ONLY.has(v.kind) && !!v.instance_path && data !== null && data !== undefined && resolves(data, v.instance_path);

// `value` as JSON.stringify(value, null, 2) prints it, with the values at the pointers in
// `marks` (pointer → message) wrapped in <mark>.
function render(value, pointer, depth, marks) {
  let node;
  if (value !== null && typeof value === "object") {
    const isArray = Array.isArray(value);
    const entries = isArray ? value.map((v, i) => [i, v]) : Object.entries(value);
    const [open, close] = isArray ? ["[", "]"] : ["{", "}"];
    if (entries.length === 0) node = open + close;
    else {
      const pad = "  ".repeat(depth + 1);
      node = [
        open, "\n",
        ...entries.flatMap(([key, v], i) => [
          pad,
          isArray ? "" : `${JSON.stringify(key)}: `,
          render(v, `${pointer}/${escapeToken(key)}`, depth + 1, marks),
          i < entries.length - 1 ? ",\n" : "\n",
        ]),
        "  ".repeat(depth), close,
      ];
    }
  } else node = JSON.stringify(value);
  const message = marks.get(pointer);
  return message ? <mark title={message}>{node}</mark> : node;
}

export function MarkedJson({ data, violations }) {
  const marks = new Map();
  for (const v of violations) {
    if (!marksValue(v, data)) continue;
    marks.set(v.instance_path, [marks.get(v.instance_path), v.message].filter(Boolean).join("; "));
  }
  return <pre class="mono">{render(data, "", 0, marks)}</pre>;
}

export function ViolationList({ violations, data }) {
  return (
    <ul class="violations">
      {violations.map((v) => (
        <li>
          <span class="badge off">{v.kind}</span> <code>{v.instance_path || "/"}</code>{" "}
          {marksValue(v, data) ? v.message : <mark>{v.message}</mark>}
        </li>
      ))}
    </ul>
  );
}

// Violations per hour as bars, oldest left; each bar's title says its hour and its counts by kind.
function HourBars({ hours }) {
  if (!hours?.length) return null;
  const max = Math.max(...hours.map((h) => h.count), 1);
  const width = 10;
  return (
    <figure class="hours" data-testid="violations-hours">
      <svg viewBox={`0 0 ${hours.length * width} 40`} preserveAspectRatio="none" role="img" aria-label="Violations per hour">
        {hours.map((h, i) => {
          const height = h.count ? Math.max((36 * h.count) / max, 1.5) : 0;
          return (
            <rect x={i * width + 1} y={40 - height} width={width - 2} height={height}>
              <title>{`${new Date(h.at).toLocaleString()}: ${Object.entries(h.kinds ?? {}).map(([k, n]) => `${n} ${k}`).join(", ")}`}</title>
            </rect>
          );
        })}
      </svg>
      <figcaption class="small muted row">
        <span>{new Date(hours[0].at).toLocaleString()}</span>
        <span style="flex: 1" />
        <span>peak {max} an hour</span>
        <span style="flex: 1" />
        <span>{new Date(hours[hours.length - 1].at).toLocaleString()}</span>
      </figcaption>
    </figure>
  );
}

export function ViolationReport({ session, type, entry }) {
  if (!entry || entry.warned + entry.blocked === 0) {
    return <p class="muted" data-testid="violations-none">No violations of the {type} schema recorded.</p>;
  }
  const kinds = Object.entries(entry.kinds ?? {}).filter(([, n]) => n > 0).sort((a, b) => b[1] - a[1]);
  return (
    <div class="report" data-testid="violations-report">
      <p data-testid="violations-counts">
        <b>{entry.warned}</b> warned about · <b>{entry.blocked}</b> blocked
        {entry.blocked > 0 && can(session, "developer") && (
          <>
            {" · "}
            <Link href={`/dlq?kind=schema_violation&type=${encodeURIComponent(entry.type)}`} data-testid="redrive-blocked">Re-drive blocked events</Link>
          </>
        )}
      </p>
      <table class="facts" data-testid="violations-kinds">
        <tbody>
          {kinds.map(([kind, n]) => (
            <tr><th scope="row">{kind}</th><td class="num">{n}</td></tr>
          ))}
        </tbody>
      </table>
      <HourBars hours={entry.hours} />
      <h3>Latest samples</h3>
      {(entry.samples ?? []).map((s) => (
        <div class="violation-sample" data-testid="violation-sample">
          <div class="small">
            <span title={s.at}>{ago(s.at)}</span> · event <code>{s.event_id}</code>
            {s.subject && <> · subject <code>{s.subject}</code></>}
            {s.blocked ? <span class="badge off">blocked</span> : <span class="badge">warned</span>}
          </div>
          {s.data === null || s.data === undefined
            ? <p class="muted small">The event's data is too large to show.</p>
            : <MarkedJson data={s.data} violations={s.violations ?? []} />}
          <ViolationList violations={s.violations ?? []} data={s.data} />
        </div>
      ))}
    </div>
  );
}
