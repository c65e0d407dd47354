// The live page of `deen run --serve`: polls /status.json, shows /video.mjpg (an <img>),
// and lists the events of /events; the event kinds come from /schema.json.

function rows(id, header, data) {
  const table = document.getElementById(id);
  table.replaceChildren();
  const head = table.insertRow();
  header.forEach(h => { const th = document.createElement("th"); th.textContent = h;
                        head.appendChild(th); });
  data.forEach(r => { const row = table.insertRow();
                      r.forEach(v => { row.insertCell().textContent = v; }); });
}

async function refresh() {
  try {
    const s = await (await fetch("/status.json", {cache: "no-store"})).json();
    rows("streams", ["stream", "state", "fps", "processed", "dropped", "tracks"],
         Object.entries(s.streams || {}).map(([k, v]) =>
           [k, v.state, v.fps, v.processed, v.dropped, v.tracks]));
    rows("matches", ["visible", "infrared"],
         (s.matches || []).map(m => ["V" + m.visible_track, "I" + m.infrared_track]));
    rows("names", ["track", "name"], Object.entries(s.names || {}));
    document.getElementById("stages").textContent = "ms per round: " +
      Object.entries(s.stage_ms || {}).map(([k, v]) => k + " " + v).join(", ");
    const faults = Object.entries(s.faults || {});
    document.getElementById("faults").textContent = faults.length ?
      "faults: " + faults.map(([k, v]) => k + " " + v).join(", ") : "";
    document.body.dataset.state = s.state;
  } catch (e) { document.body.dataset.state = "unreachable"; }
}

// Each event kind is its own SSE event name: listen to every kind the schema lists.
async function listen() {
  const schema = await (await fetch("/schema.json")).json();
  const log = document.getElementById("events");
  const source = new EventSource("/events");
  schema.properties.event.enum.forEach(kind => source.addEventListener(kind, e => {
    const line = document.createElement("div");
    if (kind === "error") line.className = "error";
    const r = JSON.parse(e.data);
    const when = new Date(r.time * 1000).toLocaleTimeString();
    const rest = Object.entries(r).filter(([k]) => !["time", "event", "latency_ms"]
      .includes(k)).map(([k, v]) => k + "=" + JSON.stringify(v)).join(" ");
    line.textContent = when + " " + kind + " " + rest;
    log.prepend(line);
    while (log.childNodes.length > 50) log.removeChild(log.lastChild);
  }));
}

// A first visit with ?token= has set the login cookie: keep the token out of the address
// bar and the browser's history.
if (new URLSearchParams(location.search).has("token")) {
  history.replaceState(null, "", location.pathname);
}
listen();
refresh(); setInterval(refresh, 1000);
