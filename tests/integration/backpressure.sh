#!/usr/bin/env bash
# Backpressure: a client that stops reading a long SSE stream must not make custos buffer the stream.
# custos pauses reading from the backend when the client's output buffer is above its watermark, so its
# memory stays flat while the backend is throttled by TCP flow control. Without backpressure custos would
# buffer the whole ~100 MB answer.
source "$(dirname "$0")/lib.sh"
# Under AddressSanitizer (make check) freed memory sits in ASan's quarantine (256 MB by default) and would count as
# custos' growth here; keep it small so the measurement is custos' own buffering.
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}quarantine_size_mb=8"

MP=$(free_port)
GP=$(free_port)
start_mock "$MP" --reply-words 2000000 --chunk-words 4 --quiet
basic_config "$GP" "$MP"
start_custos "$T/custos.yaml" "$GP"

rss_kib() { awk '/^VmRSS:/{print $2}' "/proc/$CUSTOS_PID/status"; }

python3 - "$GP" "$KEY" "$CUSTOS_PID" >"$T/bp.out" 2>&1 <<'PY'
import socket, sys, time
port, key, pid = int(sys.argv[1]), sys.argv[2], sys.argv[3]
def rss():
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
body = b'{"model":"demo","stream":true,"messages":[{"role":"user","content":"hi"}]}'
s = socket.create_connection(("127.0.0.1", port))
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + key.encode() +
          b"\r\nContent-Type: application/json\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
got = 0
while got < 256 * 1024:          # read the first 256 KiB of the stream
    d = s.recv(65536)
    if not d:
        break
    got += len(d)
r0 = rss()
time.sleep(4)                    # stop reading: the stream would be ~100 MB
r1 = rss()
print(f"read {got} bytes; rss before pause {r0} KiB, after 4 s paused {r1} KiB, growth {r1 - r0} KiB")
# resume: the stream continues where it stopped
more = 0
s.settimeout(5)
while more < 1024 * 1024:
    d = s.recv(65536)
    if not d:
        break
    more += len(d)
print(f"resumed: {more} more bytes")
s.close()
print(f"GROWTH {r1 - r0} MORE {more}")
PY
cat "$T/bp.out"
growth=$(awk '/^GROWTH/{print $2}' "$T/bp.out")
more=$(awk '/^GROWTH/{print $4}' "$T/bp.out")
if [ -n "$growth" ] && [ "$growth" -lt 16384 ]; then ok "custos memory stays flat while the client does not read (+${growth} KiB)"; else fail "memory bounded under a slow client" "growth ${growth:-?} KiB"; fi
if [ -n "$more" ] && [ "$more" -ge 1048576 ]; then ok "the stream resumes when the client reads again"; else fail "stream resumes" "only ${more:-?} bytes"; fi

# custos is still healthy and the abandoned stream was cleaned up
sleep 0.5
st=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$GP/v1/chat/completions" -H "Authorization: Bearer $KEY" \
  -H 'Content-Type: application/json' -d '{"model":"demo","max_tokens":4,"messages":[{"role":"user","content":"hi"}]}')
check "custos serves after the abandoned stream" 200 "$st"
finish
