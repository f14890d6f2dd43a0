"""A small in-memory Hugging Face Hub on 127.0.0.1 for offline publishing tests.

It implements the endpoints that ``huggingface_hub`` (create_repo, list_repo_refs, list_repo_files,
create_commit, create_tag, snapshot_download, hf_hub_download) and ``datasets.load_dataset`` (repo
info by revision, tree listing, paths-info, resolve with byte ranges) use for dataset repos, with
git semantics that matter here: every commit is an immutable snapshot, branches move, tags don't.
Parquet files go through the LFS "basic" transfer (batch endpoint, PUT, ``lfsFile`` in the commit)
as on the real Hub; other files are ``regular`` (base64 in the commit payload). Xet storage is
not emulated: clients run with ``HF_HUB_DISABLE_XET=1``. Writes without a bearer token are refused.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlparse

import yaml

KNOWN_LICENSES = {
    "apache-2.0",
    "mit",
    "cc0-1.0",
    "cc-by-4.0",
    "cc-by-sa-4.0",
    "cc-by-nc-4.0",
    "cc-by-nc-sa-3.0",
    "cc-by-nc-sa-4.0",
    "cc-by-nc-nd-4.0",
    "other",
    "unknown",
}


def is_lfs(path: str) -> bool:
    return path.endswith(".parquet")


def blob_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Commit:
    oid: str
    title: str
    files: dict[str, bytes]
    date: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S.000Z"))


@dataclass
class Repo:
    repo_id: str
    private: bool
    commits: dict[str, Commit] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)

    def resolve(self, revision: str) -> Commit | None:
        oid = self.branches.get(revision) or self.tags.get(revision) or revision
        return self.commits.get(oid)


class FakeHub:
    """The Hub's state plus a server thread; use as a context manager."""

    def __init__(self):
        self.repos: dict[str, Repo] = {}
        self.lfs: dict[str, bytes] = {}  # sha256 -> content
        self.lock = threading.Lock()
        self.auth_headers: list[str] = []
        self.requests: list[tuple[str, str]] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> FakeHub:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def commit(self, repo: Repo, branch: str, lines: list[dict]) -> Commit:
        head = repo.branches.get(branch)
        files = dict(repo.commits[head].files) if head else {}
        header = {}
        for line in lines:
            value = line["value"]
            if line["key"] == "header":
                header = value
            elif line["key"] == "file":
                files[value["path"]] = base64.b64decode(value["content"])
            elif line["key"] == "lfsFile":
                if value["oid"] not in self.lfs:
                    raise PermissionError(f"LFS object {value['oid']} was never uploaded")
                files[value["path"]] = self.lfs[value["oid"]]
            elif line["key"] == "deletedFile":
                files.pop(value["path"], None)
            elif line["key"] == "deletedFolder":
                prefix = value["path"].rstrip("/") + "/"
                files = {p: d for p, d in files.items() if not p.startswith(prefix)}
            else:
                raise ValueError(f"unsupported commit operation {line['key']}")
        parent = header.get("parentCommit")
        if parent and parent != head:
            raise PermissionError(f"parent commit {parent} is not the head of {branch}")
        oid = hashlib.sha1(f"{repo.repo_id}{head}{time.time_ns()}".encode()).hexdigest()
        commit = Commit(oid, header.get("summary", ""), files)
        repo.commits[oid] = commit
        repo.branches[branch] = oid
        return commit


_REPO = r"/api/datasets/(?P<repo>[^/]+/[^/]+)"
ROUTES = [
    ("POST", re.compile(r"^/api/repos/create$"), "create_repo"),
    ("POST", re.compile(r"^/api/validate-yaml$"), "validate_yaml"),
    ("GET", re.compile(_REPO + r"(?:/revision/(?P<rev>[^/]+))?$"), "repo_info"),
    ("GET", re.compile(_REPO + r"/refs$"), "refs"),
    ("POST", re.compile(_REPO + r"/preupload/(?P<rev>[^/]+)$"), "preupload"),
    ("POST", re.compile(_REPO + r"/commit/(?P<rev>[^/]+)$"), "commit"),
    ("POST", re.compile(_REPO + r"/tag/(?P<rev>[^/]+)$"), "tag"),
    ("GET", re.compile(_REPO + r"/tree/(?P<rev>[^/]+)(?:/(?P<path>.*))?$"), "tree"),
    ("POST", re.compile(_REPO + r"/paths-info/(?P<rev>[^/]+)$"), "paths_info"),
    (
        "POST",
        re.compile(r"^/datasets/(?P<repo>[^/]+/[^/]+)\.git/info/lfs/objects/batch$"),
        "lfs_batch",
    ),
    ("PUT", re.compile(r"^/lfs-upload/(?P<oid>[0-9a-f]{64})$"), "lfs_upload"),
    (
        "GET",
        re.compile(r"^/datasets/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)$"),
        "resolve",
    ),
    (
        "HEAD",
        re.compile(r"^/datasets/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)$"),
        "resolve",
    ),
]


class HubError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


def _handler(hub: FakeHub):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # keep test output clean
            pass

        def _dispatch(self, method: str) -> None:
            url = urlparse(self.path)
            hub.requests.append((method, url.path))
            self.query = parse_qs(url.query)
            self.body = self._read_body()
            auth = self.headers.get("Authorization")
            if auth:
                hub.auth_headers.append(auth)
            for verb, pattern, name in ROUTES:
                match = pattern.match(url.path)
                if verb == method and match:
                    params = {k: unquote(v) for k, v in match.groupdict().items() if v is not None}
                    try:
                        with hub.lock:
                            getattr(self, name)(**params)
                    except HubError as exc:
                        self._json({"error": exc.message}, exc.status, code=exc.code)
                    except PermissionError as exc:
                        self._json({"error": str(exc)}, 412)
                    return
            self._json({"error": f"fake hub: no route {method} {url.path}"}, 404)

        def do_GET(self) -> None:
            self._dispatch("GET")

        def do_HEAD(self) -> None:
            self._dispatch("HEAD")

        def do_POST(self) -> None:
            self._dispatch("POST")

        def do_PUT(self) -> None:
            self._dispatch("PUT")

        # ---- helpers ---------------------------------------------------------------------------
        def _read_body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                chunks = []
                while size := int(self.rfile.readline().split(b";")[0], 16):
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
                self.rfile.readline()
                return b"".join(chunks)
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        def _json(self, payload, status: int = 200, code: str | None = None) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if code:
                self.send_header("X-Error-Code", code)
                self.send_header("X-Error-Message", code)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        def _write_allowed(self) -> None:
            if not (self.headers.get("Authorization") or "").startswith("Bearer "):
                raise HubError(401, "Invalid credentials in Authorization header")

        def _repo(self, repo: str) -> Repo:
            if repo not in hub.repos:
                raise HubError(404, f"Repository {repo} not found", "RepoNotFound")
            return hub.repos[repo]

        def _commit(self, repo: Repo, rev: str) -> Commit:
            commit = repo.resolve(rev)
            if commit is None:
                raise HubError(404, f"Invalid rev id: {rev}", "RevisionNotFound")
            return commit

        def _entries(self, commit: Commit, paths, recursive: bool) -> list[dict]:
            last = {"id": commit.oid, "title": commit.title, "date": commit.date}
            out = []
            for path in paths:
                if path in commit.files:
                    data = commit.files[path]
                    entry = {
                        "type": "file",
                        "oid": blob_oid(data),
                        "size": len(data),
                        "path": path,
                        "lastCommit": last,
                    }
                    if is_lfs(path):
                        sha = hashlib.sha256(data).hexdigest()
                        entry["lfs"] = {"oid": sha, "size": len(data), "pointerSize": 134}
                    out.append(entry)
                else:
                    out.append(
                        {
                            "type": "directory",
                            "oid": "0" * 40,
                            "size": 0,
                            "path": path,
                            "lastCommit": last,
                        }
                    )
            return out

        # ---- endpoints -------------------------------------------------------------------------
        def create_repo(self) -> None:
            self._write_allowed()
            body = json.loads(self.body)
            repo_id = f"{body.get('organization') or 'user'}/{body['name']}"
            url = f"{hub.endpoint}/datasets/{repo_id}"
            if body.get("type") != "dataset":
                raise HubError(400, "the fake hub only hosts dataset repos")
            if repo_id in hub.repos:
                self._json({"error": "You already created this dataset repo", "url": url}, 409)
                return
            hub.repos[repo_id] = Repo(repo_id, bool(body.get("private")))
            self._json({"url": url, "name": repo_id})

        def validate_yaml(self) -> None:
            """The Hub's card check, reduced to what our cards rely on."""
            text = json.loads(self.body)["content"]
            match = re.match(r"^---\n(.*?)\n---", text, re.S)
            meta = yaml.safe_load(match[1]) if match else {}
            errors = []
            if meta.get("license") not in KNOWN_LICENSES:
                errors.append(f"license: {meta.get('license')!r} is not a known licence id")
            for config in meta.get("configs", []):
                if not config.get("config_name") or not config.get("data_files"):
                    errors.append(f"configs: bad entry {config}")
            if errors:
                self._json({"errors": [{"message": e} for e in errors]}, 400)
            else:
                self._json({"errors": [], "warnings": []})

        def repo_info(self, repo: str, rev: str = "main") -> None:
            r = self._repo(repo)
            commit = self._commit(r, rev)
            self._json(
                {
                    "id": repo,
                    "author": repo.split("/")[0],
                    "sha": commit.oid,
                    "private": r.private,
                    "disabled": False,
                    "gated": False,
                    "downloads": 0,
                    "likes": 0,
                    "tags": [],
                    "lastModified": commit.date,
                    "siblings": [{"rfilename": p} for p in sorted(commit.files)],
                    "cardData": {},
                }
            )

        def refs(self, repo: str) -> None:
            r = self._repo(repo)

            def ref(kind: str, name: str, oid: str) -> dict:
                return {"name": name, "ref": f"refs/{kind}/{name}", "targetCommit": oid}

            self._json(
                {
                    "branches": [ref("heads", n, o) for n, o in r.branches.items()],
                    "tags": [ref("tags", n, o) for n, o in r.tags.items()],
                    "converts": [],
                }
            )

        def preupload(self, repo: str, rev: str) -> None:
            self._write_allowed()
            self._repo(repo)
            files = json.loads(self.body)["files"]
            modes = [
                {"path": f["path"], "uploadMode": "lfs" if is_lfs(f["path"]) else "regular"}
                for f in files
            ]
            self._json({"files": [{**m, "shouldIgnore": False} for m in modes]})

        def lfs_batch(self, repo: str) -> None:
            self._write_allowed()
            self._repo(repo)
            objects = []
            for obj in json.loads(self.body)["objects"]:
                entry = {"oid": obj["oid"], "size": obj["size"], "authenticated": True}
                if obj["oid"] not in hub.lfs:
                    href = f"{hub.endpoint}/lfs-upload/{obj['oid']}"
                    entry["actions"] = {"upload": {"href": href, "header": {}}}
                objects.append(entry)
            self._json({"transfer": "basic", "objects": objects})

        def lfs_upload(self, oid: str) -> None:
            if hashlib.sha256(self.body).hexdigest() != oid:
                raise HubError(400, "uploaded content does not match its sha256")
            hub.lfs[oid] = self.body
            self._json({})

        def commit(self, repo: str, rev: str) -> None:
            self._write_allowed()
            r = self._repo(repo)
            if rev != "main" and rev not in r.branches:
                raise HubError(404, f"Invalid rev id: {rev}", "RevisionNotFound")
            lines = [json.loads(line) for line in self.body.splitlines() if line.strip()]
            commit = hub.commit(r, rev, lines)
            self._json(
                {
                    "commitOid": commit.oid,
                    "commitUrl": f"{hub.endpoint}/datasets/{repo}/commit/{commit.oid}",
                    "pullRequestUrl": None,
                    "success": True,
                }
            )

        def tag(self, repo: str, rev: str) -> None:
            self._write_allowed()
            r = self._repo(repo)
            commit = self._commit(r, rev)
            name = json.loads(self.body)["tag"]
            if name in r.tags:
                raise HubError(409, f"Tag {name} already exists")
            r.tags[name] = commit.oid
            self._json({"name": name, "ref": f"refs/tags/{name}", "targetCommit": commit.oid})

        def tree(self, repo: str, rev: str, path: str = "") -> None:
            commit = self._commit(self._repo(repo), rev)
            recursive = self.query.get("recursive", ["false"])[0].lower() in ("1", "true")
            prefix = path.strip("/") + "/" if path.strip("/") else ""
            if prefix and not any(p.startswith(prefix) for p in commit.files):
                raise HubError(404, f"{path} does not exist", "EntryNotFound")
            names: set[str] = set()
            for p in commit.files:
                if not p.startswith(prefix):
                    continue
                parts = p[len(prefix) :].split("/")
                if recursive:
                    names.update(prefix + "/".join(parts[: i + 1]) for i in range(len(parts)))
                else:
                    names.add(prefix + parts[0])
            self._json(self._entries(commit, sorted(names), recursive))

        def paths_info(self, repo: str, rev: str) -> None:
            commit = self._commit(self._repo(repo), rev)
            content = self.headers.get("Content-Type", "")
            if "json" in content:
                paths = json.loads(self.body)["paths"]
            else:
                paths = parse_qs(self.body.decode())["paths"]
            paths = [paths] if isinstance(paths, str) else paths
            dirs = {p.rsplit("/", 1)[0] for p in commit.files if "/" in p}
            known = [p for p in paths if p in commit.files or p in dirs]
            self._json(self._entries(commit, known, False))

        def resolve(self, repo: str, rev: str, path: str) -> None:
            commit = self._commit(self._repo(repo), rev)
            if path not in commit.files:
                raise HubError(404, f"Entry not found: {path}", "EntryNotFound")
            data = commit.files[path]
            status, start, end = 200, 0, len(data)
            match = re.match(r"bytes=(\d+)-(\d*)", self.headers.get("Range") or "")
            if match and self.command == "GET":
                start = int(match[1])
                end = min(int(match[2]) + 1, len(data)) if match[2] else len(data)
                status = 206
            self.send_response(status)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(end - start))
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("ETag", f'"{blob_oid(data)}"')
            if is_lfs(path):
                self.send_header("X-Linked-Etag", f'"{hashlib.sha256(data).hexdigest()}"')
                self.send_header("X-Linked-Size", str(len(data)))
            self.send_header("X-Repo-Commit", commit.oid)
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{end - 1}/{len(data)}")
            self.end_headers()
            if self.command == "GET":
                self.wfile.write(data[start:end])

    return Handler
