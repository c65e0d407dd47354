#!/usr/bin/env bash
# A site on one machine: a message broker (Mosquitto), a shared gallery (PostgreSQL) and a
# model server (deen serve: Triton Inference Server) on loopback, and two boxes (two `deen
# run` processes using the served model), each on its own generated camera pair.
# One person is enrolled once, while both boxes run; both recognise them, and every event
# of both boxes arrives on the broker, where a subscriber (the project's own MQTT client,
# paho-mqtt) records it. Exits 1 with one line when the subscriber hears nothing, or when a
# box's events or its recognition of the person do not all reach the broker.
# Usage: scripts/site-demo.sh [WORK-DIR]
#
# Needs the set-up of `scripts/setup.sh --dev` (it installs Mosquitto and PostgreSQL). The
# model is the one `deen demo --train` trains on generated people when it is cached, else a
# random DEEN, whose names mean nothing (the script says which). Everything runs as this
# user except PostgreSQL, which refuses root and then runs as Debian's postgres user.
# SITE_DEMO_SUBSCRIBE (default deen/#) is the subscriber's topic filter; another filter
# shows the demo's own failure report.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
py="$root/.venv/bin/python"
fail() { echo "site-demo: $*" >&2; exit 1; }
[ -x "$py" ] || fail "run scripts/setup.sh --dev first"
mosquitto="$(command -v mosquitto || echo /usr/sbin/mosquitto)"
[ -x "$mosquitto" ] || fail "Mosquitto is not installed (Debian package mosquitto;" \
  "scripts/setup.sh --dev installs it when run as root)"
compgen -G "/usr/lib/postgresql/*/bin/initdb" > /dev/null || fail "PostgreSQL is not" \
  "installed (Debian package postgresql; scripts/setup.sh --dev installs it when run as root)"
work="$(realpath -m "${1:-$(mktemp -d /tmp/deen-site-XXXXXX)}")"
mkdir -p "$work"
chmod 755 "$work"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  [ -f "$work/pg/data/postmaster.pid" ] && kill -INT "$(head -1 "$work/pg/data/postmaster.pid")" \
    2>/dev/null || true
  wait 2>/dev/null || true
}
trap cleanup EXIT
port() { "$py" -c "import socket; s=socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])"; }
wait_port() {
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  fail "nothing listens on port $1"
}

echo "== broker: Mosquitto on loopback, and a subscriber recording what arrives"
mqtt_port="$(port)"
{ echo "listener $mqtt_port 127.0.0.1"; echo "allow_anonymous true"
  [ "$(id -u)" = 0 ] && echo "user root"; } > "$work/mosquitto.conf"
"$mosquitto" -c "$work/mosquitto.conf" 2> "$work/mosquitto.log" &
pids+=($!)
wait_port "$mqtt_port"
# The subscriber writes every message (QoS 1) as a line, TOPIC PAYLOAD. Once subscribed it
# says so and sends a probe through the broker, which it must then receive itself.
"$py" - "$mqtt_port" "${SITE_DEMO_SUBSCRIBE:-deen/#}" > "$work/broker.log" \
  2> "$work/subscriber.log" <<'EOF' &
import sys
import paho.mqtt.client as mqtt
port, topics = int(sys.argv[1]), sys.argv[2]
client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="site-demo-subscriber")
client.on_connect = lambda c, u, f, reason, p: c.subscribe(topics, qos=1)


def on_subscribe(client, *_):
    print("# subscribed", flush=True)
    client.publish("deen/site-demo/probe", "probe", qos=1)


client.on_subscribe = on_subscribe
client.on_message = lambda c, u, m: print(m.topic, m.payload.decode(), flush=True)
client.connect("127.0.0.1", port)
client.loop_forever()
EOF
subscriber=$!
pids+=("$subscriber")
for _ in $(seq 100); do
  grep -q "^# subscribed" "$work/broker.log" 2>/dev/null && break
  kill -0 "$subscriber" 2>/dev/null || break
  sleep 0.1
done
grep -q "^# subscribed" "$work/broker.log" ||
  fail "the broker's subscriber did not start ($(tail -1 "$work/subscriber.log"))"
for _ in $(seq 50); do
  grep -q "^deen/site-demo/probe " "$work/broker.log" && break
  sleep 0.1
done
grep -q "^deen/site-demo/probe " "$work/broker.log" || fail "the broker's subscriber" \
  "received nothing (a probe on deen/site-demo/probe, within 5 s); see $work/broker.log"

echo "== gallery: PostgreSQL on loopback"
pg_port="$(port)"
bin="$(dirname "$(ls /usr/lib/postgresql/*/bin/initdb | tail -1)")"
as_pg=()
mkdir -p "$work/pg"
if [ "$(id -u)" = 0 ]; then
  as_pg=(runuser -u postgres --)
  chown postgres "$work/pg"
fi
"${as_pg[@]}" "$bin/initdb" -D "$work/pg/data" -U deen --auth=trust -E UTF8 --no-sync > /dev/null
"${as_pg[@]}" "$bin/postgres" -D "$work/pg/data" -p "$pg_port" -h 127.0.0.1 -k "$work/pg" \
  > "$work/pg/log" 2>&1 &
wait_port "$pg_port"
sleep 1
gallery="postgresql://deen@127.0.0.1:$pg_port/postgres"

echo "== model and two camera pairs"
model="$("$py" -c "from deen.train.generated_model import cached_model; print(cached_model() or '')")"
if [ -z "$model" ]; then
  model="$work/random.pt"
  "$py" -c "
from deen.models.checkpoint import random_model, save_checkpoint
save_checkpoint(random_model('sysu', 0)[0], '$model', {'input_size': [128, 48]})"
  echo "   a RANDOM DEEN: the boxes will run, but the names they give mean nothing"
  echo "   (deen demo --train trains one on generated people and caches it)"
  threshold=(--set gallery.threshold=0.99)
else
  echo "   $model (trained on generated people)"
  threshold=()
fi
echo "== model server: deen serve (Triton Inference Server) on loopback"
"$py" -m deen export --engine onnx --checkpoint "$model" --out "$work/deen.onnx" > /dev/null
serve_port="$(port)"
"$py" -m deen serve "$work/deen.onnx" --listen "127.0.0.1:$serve_port" --name deen \
  > "$work/serve.log" 2> "$work/serve.err" &
pids+=($!)
for _ in $(seq 1200); do
  grep -q "serving" "$work/serve.log" 2>/dev/null && break
  sleep 0.1
done
grep -q "serving" "$work/serve.log" ||
  fail "the model server did not start: $(tail -1 "$work/serve.err")"
sed 's/^/   /' "$work/serve.log"
served="triton://127.0.0.1:$serve_port/deen"
for box in a b; do
  "$py" -m deen data scene --out "$work/pair-$box" --people 4 --seconds 20 --seed 7 > /dev/null
done
# The person to enrol: five clear crops of one person from box a's visible truth. Both
# boxes watch the same generated corridor (seed 7), so the same people pass both.
"$py" - "$work" <<'EOF'
import sys
from pathlib import Path
import cv2
work = Path(sys.argv[1])
pair, out = work / "pair-a", work / "alice"
out.mkdir()
# MOTChallenge rows: frame, id, left, top, width, height, mark, class, visibility.
rows = [list(map(float, line.split(",")))
        for line in (pair / "rgb" / "gt" / "gt.txt").read_text().splitlines()]
clear = [r for r in rows if r[5] >= 80 and r[8] >= 0.9 and r[2] >= 0 and r[2] + r[4] <= 768]
person = max({r[1] for r in clear}, key=lambda i: sum(r[1] == i for r in clear))
rows = [r[:6] for r in clear if r[1] == person][::8][:5]
video = cv2.VideoCapture(str(pair / "visible.mp4"))
frames = {}
index = 1
while True:
    ok, image = video.read()
    if not ok:
        break
    frames[index] = image
    index += 1
for n, (frame, _, x, y, w, h) in enumerate(rows):
    image = frames[int(frame)]
    cv2.imwrite(str(out / f"{n}.png"), image[int(y):int(y + h), int(x):int(x + w)])
print(f"   enrolling {len(rows)} crops of one person from box a's visible stream")
EOF
"$py" -m deen gallery add nobody --images "$work/alice" --modality visible --model "$served" \
  --gallery "$gallery" > /dev/null  # creates the gallery, tied to the model
"$py" -m deen gallery remove nobody --gallery "$gallery" > /dev/null

echo "== two boxes, events to the broker and to a file each"
boxes=()
for box in a b; do
  "$py" -m deen run --rgb "$work/pair-$box/visible.mp4" --ir "$work/pair-$box/infrared.mp4" \
    --detector "$work/pair-$box/boxes.jsonl" --model "$served" --gallery "$gallery" \
    "${threshold[@]}" --events "$work/box-$box.jsonl" \
    --events "mqtt://127.0.0.1:$mqtt_port/deen" --site-name "box-$box" --loop --duration 150 \
    --set outputs.status_every_s=0 2> "$work/box-$box.log" &
  pids+=($!)
  boxes+=($!)
done
for box in a b; do
  for _ in $(seq 600); do
    grep -q track_started "$work/box-$box.jsonl" 2>/dev/null && break
    sleep 0.1
  done
done
echo "== enrolling alice once, while both boxes run"
"$py" -m deen gallery add alice --images "$work/alice" --modality visible --model "$served" \
  --gallery "$gallery"
# The boxes' corridors loop: they run until each has recognised alice (at most 90 s; a
# busy machine embeds few crops a second), then stop as on Ctrl-C, flushing their events.
for _ in $(seq 900); do
  grep -q '"name": "alice"' "$work/box-a.jsonl" && grep -q '"name": "alice"' "$work/box-b.jsonl" &&
    break
  sleep 0.1
done
kill -INT "${boxes[@]}" 2>/dev/null || true
names=(a b)
for i in 0 1; do
  wait "${boxes[$i]}" ||
    fail "box-${names[$i]} ended with an error: $(tail -1 "$work/box-${names[$i]}.log")"
done
sleep 1  # the broker acknowledged every event; the last ones reach the subscriber
echo "== what the broker received"
# Each box's own file is what it sent: every line must be on the broker, under
# deen/BOX/ (QoS 1 may deliver one twice: counted once), its recognitions of alice too.
"$py" - "$work" <<'EOF'
import json
import sys
from pathlib import Path
work = Path(sys.argv[1])
lines = (work / "broker.log").read_text().splitlines()
received: dict[str, set[str]] = {}
for line in lines:
    topic, _, payload = line.partition(" ")
    if topic.startswith("deen/box-"):
        received.setdefault(topic.split("/")[1], set()).add(payload)


def alice(records):
    return [r for r in records if '"recognised"' in r and json.loads(r).get("name") == "alice"]


problems = []
for box in ("box-a", "box-b"):
    own = (work / f"{box}.jsonl").read_text().splitlines()
    arrived = received.get(box, set())
    print(f"   {box}: {len(arrived)} events on deen/{box}/# (its own file holds {len(own)}), "
          f"{len(alice(arrived))} recognition(s) of alice")
    if not own or not set(own) <= arrived:
        problems.append(f"{box}: {len(set(own) & arrived)} of its {len(own)} events reached "
                        "the broker")
    elif not alice(arrived):
        problems.append(f"{box}: no recognition of alice reached the broker (its own events "
                        f"hold {len(alice(own))})")
for line in [line for line in lines if line.split(" ", 1)[0].endswith("/recognised")][:2]:
    print(f"   {line}")
if problems:
    print(f"site-demo: {'; '.join(problems)}", file=sys.stderr)
    sys.exit(1)
EOF
echo "== done; everything is in $work"
