"""Serve the OHIF viewer next to Orthanc, from one origin.

The prebuilt OHIF (`@ohif/app` from npm, unpacked into .ohif/<version>/ by the
installer) is served as static files with the single-page-app fallback, our
`ohif-config/app-config.js` replaces the one it ships, and /dicom-web,
/wado and Orthanc-RT's /rt/ routes (read by the Orthanc-RT panel in OHIF)
are passed through to Orthanc. Orthanc stays the only data source and the
browser never makes a cross-origin request (no CORS set-up in Orthanc).

Authentication stays Orthanc's: the proxy holds no credentials of its own. It
forwards the browser's Authorization header and hands Orthanc's 401 and its
WWW-Authenticate challenge back, so the browser asks the user for their
Orthanc login and Orthanc decides what every request may see. OHIF's own files
(the published npm package and our app-config.js, no patient data and no
secrets) are served to anyone.

    python -m orthanc_rt.ops.viewer --port 3000 --orthanc http://127.0.0.1:8042
"""
from __future__ import annotations

import argparse
import mimetypes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import requests

from orthanc_rt.ops.stack import PROJECT_DIR

CONFIG = PROJECT_DIR / "ohif-config" / "app-config.js"
_PROXIED = ("/dicom-web", "/wado", "/rt/")  # /rt/: the Orthanc-RT panel, with the user's own login
_FORWARDED_HEADERS = ("accept", "content-type", "authorization", "range")
_RETURNED_HEADERS = ("Content-Type", "WWW-Authenticate")  # the challenge makes the browser ask for a login


def ohif_dist() -> Path:
    version = (PROJECT_DIR / "ohif-config" / "VERSION").read_text().strip()
    return PROJECT_DIR / ".ohif" / version


def make_handler(dist: Path, orthanc_url: str) -> type[BaseHTTPRequestHandler]:
    session = requests.Session()
    session.trust_env = False  # no ~/.netrc credentials or proxy settings slipped into the users' requests

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            self._dispatch()

        def do_POST(self) -> None:  # noqa: N802  (STOW-RS of OHIF's reports)
            self._dispatch()

        def _dispatch(self) -> None:
            path = urlsplit(self.path).path
            if path.startswith(_PROXIED):
                self._proxy()
            elif self.command == "GET":
                self._static(path)
            else:
                self.send_error(405)

        def _static(self, path: str) -> None:
            if path == "/app-config.js":
                return self._file(CONFIG)
            candidate = (dist / path.lstrip("/")).resolve()
            if not candidate.is_relative_to(dist.resolve()):
                return self.send_error(404)
            if not candidate.is_file():
                candidate = dist / "index.html"  # client-side routes (/viewer?..., /segmentation, ...)
            self._file(candidate)

        def _file(self, path: Path) -> None:
            data = path.read_bytes()
            self.send_response(200)
            self.send_header("Content-Type", mimetypes.guess_type(path.name)[0] or "application/octet-stream")
            self.send_header("Content-Length", str(len(data)))
            cache = "no-cache" if path.suffix in (".html",) or path == CONFIG else "max-age=86400"
            self.send_header("Cache-Control", cache)
            self.end_headers()
            self.wfile.write(data)

        def _proxy(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            headers = {k: v for k, v in self.headers.items() if k.lower() in _FORWARDED_HEADERS}
            try:
                upstream = session.request(self.command, orthanc_url.rstrip("/") + self.path, data=body,
                                           headers=headers, stream=True, timeout=120)
            except requests.RequestException as exc:
                return self.send_error(502, f"Orthanc unreachable: {type(exc).__name__}")
            with upstream:
                content = upstream.raw.read(decode_content=True)
                self.send_response(upstream.status_code)
                for name in _RETURNED_HEADERS:
                    if name in upstream.headers:
                        self.send_header(name, upstream.headers[name])
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

        def log_message(self, format: str, *args) -> None:  # keep the log to errors
            if args and str(args[1]).startswith(("4", "5")):
                super().log_message(format, *args)

    return Handler


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=3000)
    parser.add_argument("--bind", default="127.0.0.1")
    parser.add_argument("--orthanc", default="http://127.0.0.1:8042")
    args = parser.parse_args(argv)
    dist = ohif_dist()
    if not (dist / "index.html").is_file():
        raise SystemExit(f"OHIF is not installed in {dist}: run ./orthanc-rt install")
    server = ThreadingHTTPServer((args.bind, args.port), make_handler(dist, args.orthanc))
    print(f"OHIF viewer on http://{args.bind}:{args.port}/ (Orthanc {args.orthanc})", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
