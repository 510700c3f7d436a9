"""A tiny key-value HTTP admin API for tests/rpc.rs: GET /keys/K reads, PUT/POST /keys/K
writes (the body), DELETE /keys/K deletes, GET /admin/flush deletes everything (an API that
mutates on GET). Listens on 127.0.0.1:PORT (argv[1]); prints "ready" once listening."""
import http.server
import sys

store = {}


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def reply(self, code, body=b""):
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def key(self):
        return self.path.split("?")[0][len("/keys/"):] if self.path.startswith("/keys/") else None

    def do_GET(self):
        if self.path.startswith("/admin/flush"):
            store.clear()
            return self.reply(200, b"flushed\n")
        k = self.key()
        if k in store:
            return self.reply(200, store[k])
        self.reply(404, b"no such key\n")

    def do_PUT(self):
        n = int(self.headers.get("Content-Length", "0"))
        store[self.key()] = self.rfile.read(n)
        self.reply(200, b"stored\n")

    do_POST = do_PUT

    def do_DELETE(self):
        store.pop(self.key(), None)
        self.reply(200, b"deleted\n")

    def log_message(self, *args):
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
print("ready", flush=True)
server.serve_forever()
