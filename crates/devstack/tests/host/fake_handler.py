"""A controllable custom handler for testing the host stand-in (stdlib only).

GET /                        404 (any answer means ready)
/api/.../status201           201, X-Foo: bar, 1 KiB of binary
/api/.../redirect            302 Location: /x
/api/.../fail                500 "handler failed"
/api/.../sleep               answers after 10 s
/api/.../crash               the process dies mid-request
/api/.../exit/<code>         answers, then exits with <code>
/api/.../stream/<mib>        <mib> MiB in 1 MiB writes 10 ms apart (byte i = i % 251), then
                             writes the file $FAKE_STARTS.stream-done
anything else under /api/    echoes method, path, headers, body, env, cwd, argv
POST /<FunctionName>         payload mode: echoes the envelope inside Outputs.res
FAKE_MODE=never-bind|bind-late changes start-up; FAKE_STARTS counts starts.
"""
import base64, json, os, sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

with open(os.environ["FAKE_STARTS"], "a") as f:
    f.write("start\n")
print("hello", flush=True)
print("warning x", file=sys.stderr, flush=True)
print("boom", file=sys.stderr, flush=True)
mode = os.environ.get("FAKE_MODE", "")
if mode == "never-bind":
    time.sleep(3600)
if mode == "bind-late":
    time.sleep(2)

ENV_KEYS = ("AZURE_FUNCTIONS_ENVIRONMENT", "WEBSITE_HOSTNAME", "AzureWebJobsScriptRoot", "FROM_VALUES", "FROM_PLATFORM")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def send(self, status, body=b"", ctype="application/json", headers=()):
        self.send_response(status)
        if ctype:
            self.send_header("Content-Type", ctype)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def handle_any(self):
        length = int(self.headers.get("Content-Length") or 0)
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = self.read_chunked()
        else:
            body = self.rfile.read(length) if length else b""
        route = self.path.split("?")[0]
        if route == "/":
            return self.send(404, b"", None)
        if self.command == "POST" and not route.startswith("/api/") and route.count("/") == 1:
            envelope = json.loads(body)
            echo = {"function": route[1:], "envelope": envelope, "headers": [[k, v] for k, v in self.headers.items()]}
            reply = {"Outputs": {"res": {"statusCode": 200, "headers": {"Content-Type": "application/json"},
                                         "body": json.dumps(echo)}},
                     "Logs": ["payload " + route[1:]]}
            return self.send(200, json.dumps(reply).encode())
        if route.endswith("/status201"):
            return self.send(201, bytes(range(256)) * 4, "application/octet-stream", [("X-Foo", "bar")])
        if route.endswith("/redirect"):
            return self.send(302, b"", None, [("Location", "/x")])
        if "/stream/" in route:
            mib = int(route.rsplit("/", 1)[1])
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(mib << 20))
            self.end_headers()
            block = bytes(i % 251 for i in range(1 << 20))
            try:
                for _ in range(mib):
                    self.wfile.write(block)
                    self.wfile.flush()
                    time.sleep(0.01)
            except (BrokenPipeError, ConnectionResetError):
                return
            with open(os.environ["FAKE_STARTS"] + ".stream-done", "w") as f:
                f.write("done")
            return
        if route.endswith("/fail"):
            return self.send(500, b"handler failed", "text/plain")
        if route.endswith("/sleep"):
            time.sleep(10)
            return self.send(200, b"late", "text/plain")
        if route.endswith("/crash"):
            os._exit(1)
        if "/exit/" in route:
            self.send(200, b"bye", "text/plain")
            os._exit(int(route.rsplit("/", 1)[1]))
        echo = {
            "method": self.command,
            "path": self.path,
            "headers": [[k, v] for k, v in self.headers.items()],
            "body_b64": base64.b64encode(body).decode(),
            "env": {k: v for k, v in os.environ.items() if k.startswith("FUNCTIONS_") or k in ENV_KEYS},
            "cwd": os.getcwd(),
            "argv": sys.argv[1:],
        }
        return self.send(200, json.dumps(echo).encode())

    def read_chunked(self):
        body = b""
        while True:
            size = int(self.rfile.readline().split(b";")[0].strip(), 16)
            if size == 0:
                self.rfile.readline()
                return body
            body += self.rfile.read(size)
            self.rfile.readline()

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = handle_any


ThreadingHTTPServer(("127.0.0.1", int(os.environ["FUNCTIONS_CUSTOMHANDLER_PORT"])), Handler).serve_forever()
