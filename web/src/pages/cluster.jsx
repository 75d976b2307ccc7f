// The cluster page: the instances sharing the work, which partitions each owns, and how far
// each partition's committed position trails the event stream. Refreshes every few seconds.
import { useEffect, useState } from "preact/hooks";
import { ago, describe, get } from "../api.js";

const REFRESH_MS = 3000;

export function ClusterPage() {
  const [cluster, setCluster] = useState(null);
  const [error, setError] = useState(null);
  useEffect(() => {
    let alive = true;
    const load = () =>
      get("/api/cluster")
        .then((c) => {
          if (!alive) return;
          setCluster(c);
          setError(null);
        })
        .catch((e) => alive && setError(describe(e)));
    load();
    const timer = setInterval(load, REFRESH_MS);
    return () => {
      alive = false;
      clearInterval(timer);
    };
  }, []);
  if (!cluster) return <section><h1>Cluster</h1>{error ? <p class="error" role="alert">{error}</p> : <p class="loading">Loading…</p>}</section>;
  const unowned = cluster.partition_states.filter((p) => !p.owner);
  return (
    <section>
      <div class="page-head">
        <h1>Cluster</h1>
        <span class="muted" data-testid="cluster-summary">
          {cluster.instances.length} {cluster.instances.length === 1 ? "instance" : "instances"} · {cluster.partitions} partitions · stream at {cluster.stream_last_sequence}
        </span>
      </div>
      {error && <p class="error" role="alert">{error}</p>}
      {unowned.length > 0 && (
        <p class="notice" role="status">
          {unowned.length} {unowned.length === 1 ? "partition has" : "partitions have"} no owner yet ({unowned.map((p) => p.partition).join(", ")}): an instance takes {unowned.length === 1 ? "it" : "them"} within a lease.
        </p>
      )}
      <h2>Instances</h2>
      <table class="list" data-testid="cluster-instances">
        <thead>
          <tr><th scope="col">Instance</th><th scope="col">Partitions</th><th scope="col">Largest lag</th><th scope="col">Last checkpoint</th><th scope="col">Address</th><th scope="col">Started</th></tr>
        </thead>
        <tbody>
          {cluster.instances.map((i) => (
            <tr>
              <td class="mono">{i.id}{i.id === cluster.instance && <span class="badge on">this one</span>}</td>
              <td class="small">{i.partitions.length ? i.partitions.join(", ") : "none"}</td>
              <td>{i.lag}</td>
              <td class="small">{ago(i.last_checkpoint)}</td>
              <td class="mono small">{i.listen}</td>
              <td class="small">{ago(i.started_at)}</td>
            </tr>
          ))}
        </tbody>
      </table>
      <h2>Partitions</h2>
      <table class="list" data-testid="cluster-partitions">
        <thead>
          <tr><th scope="col">#</th><th scope="col">Owner</th><th scope="col">Epoch</th><th scope="col">Committed position</th><th scope="col">Lag</th><th scope="col">Last checkpoint</th></tr>
        </thead>
        <tbody>
          {cluster.partition_states.map((p) => (
            <tr>
              <td>{p.partition}</td>
              <td class="mono small">{p.owner ?? <span class="badge off">none</span>}</td>
              <td>{p.epoch}</td>
              <td>{p.position}</td>
              <td>{p.lag}</td>
              <td class="small">{ago(p.last_checkpoint)}</td>
            </tr>
          ))}
        </tbody>
      </table>
      <p class="muted small">
        Lag is the number of stream messages after a partition's committed position: what a new owner would read again if this one stopped now.
      </p>
    </section>
  );
}
