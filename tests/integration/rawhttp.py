# SPDX-License-Identifier: Apache-2.0
# Raw-socket HTTP/1.1 client for integration tests (stdlib only): sends bytes exactly as given and
# reports the responses it can parse, so tests can send requests curl refuses to produce.
#
#   python3 rawhttp.py PORT REQUEST [--expect N] [--timeout S] [--dump FILE] [--tls]
#
# REQUEST uses Python escapes (\r \n \x00 ...); "{BODY:N}" expands to N bytes of 'a'; "{PAUSE}" splits
# the bytes into separate writes 200 ms apart (to cross the server's read boundaries).
# Prints one line: the status codes of the complete responses in order, then "CLOSED" if the server
# closed the connection, or "OPEN" if it was still open when we stopped (after N responses or S
# seconds). No response at all prints "NONE CLOSED" or "NONE OPEN".
import argparse
import re
import socket
import ssl
import sys
import time


def expand(s):
    s = re.sub(r"\{BODY:(\d+)\}", lambda m: "a" * int(m.group(1)), s)
    return s.encode("latin-1").decode("unicode_escape").encode("latin-1")


def parse_responses(data):
    """Returns (list of (status, headers dict, body), complete flag) for the complete responses in data."""
    out = []
    pos = 0
    while True:
        end = data.find(b"\r\n\r\n", pos)
        if end < 0:
            break
        head = data[pos:end].decode("latin-1").split("\r\n")
        m = re.match(r"HTTP/1\.[01] (\d{3})", head[0])
        if not m:
            break
        status = int(m.group(1))
        hdrs = {}
        for line in head[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                hdrs[k.strip().lower()] = v.strip()
        p = end + 4
        if 100 <= status < 200:
            out.append((status, hdrs, b""))
            pos = p
            continue
        if hdrs.get("transfer-encoding", "").lower() == "chunked":
            body = b""
            ok = False
            while True:
                le = data.find(b"\r\n", p)
                if le < 0:
                    break
                size = int(data[p:le].split(b";")[0], 16)
                if size == 0:
                    te = data.find(b"\r\n\r\n", le)
                    if te < 0 and data[le:le + 4] != b"\r\n\r\n":
                        break
                    p = le + 4
                    ok = True
                    break
                if len(data) < le + 2 + size + 2:
                    break
                body += data[le + 2:le + 2 + size]
                p = le + 2 + size + 2
            if not ok:
                break
        else:
            n = int(hdrs.get("content-length", "0"))
            if len(data) < p + n:
                break
            body = data[p:p + n]
            p += n
        out.append((status, hdrs, body))
        pos = p
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("port", type=int)
    ap.add_argument("request")
    ap.add_argument("--expect", type=int, default=1, help="stop after this many final responses")
    ap.add_argument("--timeout", type=float, default=5.0)
    ap.add_argument("--dump", help="write everything received to this file")
    ap.add_argument("--tls", action="store_true")
    a = ap.parse_args()

    s = socket.create_connection(("127.0.0.1", a.port), timeout=a.timeout)
    if a.tls:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        s = ctx.wrap_socket(s)
    try:
        for i, part in enumerate(a.request.split("{PAUSE}")):
            if i:
                time.sleep(0.2)
            s.sendall(expand(part))
    except OSError:
        pass  # the server may close before reading everything; what it answered still counts
    data = b""
    closed = False
    deadline = time.monotonic() + a.timeout
    while True:
        finals = [r for r in parse_responses(data) if r[0] >= 200]
        if len(finals) >= a.expect:
            break
        left = deadline - time.monotonic()
        if left <= 0:
            break
        s.settimeout(left)
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            break
        except OSError:
            closed = True
            break
        if not chunk:
            closed = True
            break
        data += chunk
    if not closed:
        # a closing server has usually sent FIN right after the last response: look briefly
        s.settimeout(0.3)
        try:
            chunk = s.recv(65536)
            if not chunk:
                closed = True
            else:
                data += chunk
        except socket.timeout:
            pass
        except OSError:
            closed = True
    s.close()
    if a.dump:
        with open(a.dump, "wb") as f:
            f.write(data)
    finals = [str(r[0]) for r in parse_responses(data) if r[0] >= 200]
    print(" ".join(finals or ["NONE"]) + (" CLOSED" if closed else " OPEN"))


if __name__ == "__main__":
    sys.exit(main())
