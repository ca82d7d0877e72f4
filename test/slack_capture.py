"""A Slack incoming-webhook stand-in on 127.0.0.1 that records what was posted."""
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class SlackCapture:
    def __init__(self, status: int = 200):
        self.status = status
        self.messages: list[str] = []
        capture = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                capture.messages.append(json.loads(body or b"{}").get("text", ""))
                self.send_response(capture.status)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/services/T000/B000/secret-token"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()
