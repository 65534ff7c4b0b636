"""Real registries for tests: CNCF distribution processes on 127.0.0.1.

Each registry is Debian's ``docker-registry`` (distribution 2.8) started with
its own config in its own temporary directory, on a free loopback port, in
one of four set-ups: anonymous plain HTTP, htpasswd Basic auth, Bearer token
auth (with a small token server issuing JWTs), and TLS with a CA made here.
Processes are started and stopped by their own pid; a registry that does not
come up raises with its log.

Test images are made here too, as OCI layouts written byte by byte (a config,
one gzipped tar layer, a manifest, optionally an index over several
platforms), and pushed with ``skopeo copy --all --preserve-digests`` so that
the digests the tests expect are those of the bytes written. Nothing is
pulled from the internet.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import ctypes.util
import datetime as dt
import gzip
import hashlib
import io
import ipaddress
import json
import secrets
import shutil
import socket
import ssl
import subprocess
import tarfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

REGISTRY_BINARY = "docker-registry"
HOST = "127.0.0.1"
TOKEN_SERVICE = "headwater-test-registry"
TOKEN_ISSUER = "headwater-test-token-server"
IMAGE_CACHE = Path.home() / ".cache" / "headwater" / "images"

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"

Auth = Literal["none", "htpasswd", "token"]


def free_port() -> int:
    # The port is closed again before the registry binds it; a collision is
    # caught by start-up's retry.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# --- certificates -------------------------------------------------------------


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


@dataclass(frozen=True)
class TestCa:
    """A CA made for one test session, and a server certificate it signed."""

    ca_file: Path
    cert_file: Path
    key_file: Path
    cert_dir: Path
    """A directory with ``ca.crt``, the layout skopeo's ``--*-cert-dir`` reads."""


def make_ca(directory: Path, *, ip: str = HOST) -> TestCa:
    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("headwater test CA"))
        .issuer_name(_name("headwater test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(ip))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address(ip)), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_file = directory / "ca.pem"
    ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    cert_file = directory / "server.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file = directory / "server-key.pem"
    _write_key(key_file, key)
    cert_dir = directory / "certs.d"
    cert_dir.mkdir(exist_ok=True)
    shutil.copy(ca_file, cert_dir / "ca.crt")
    return TestCa(ca_file, cert_file, key_file, cert_dir)


# --- htpasswd -----------------------------------------------------------------


def bcrypt_hash(password: str) -> str:
    """A bcrypt hash, the only kind distribution's htpasswd accepts.

    The ``bcrypt`` package when installed; otherwise the C library's
    ``crypt(3)`` (libxcrypt, which Debian ships, does bcrypt); otherwise
    apache2-utils' ``htpasswd``.
    """
    try:
        import bcrypt  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        pass
    else:
        hashed: bytes = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=5))
        return hashed.decode()
    library = ctypes.util.find_library("crypt")
    if library:
        libcrypt = ctypes.CDLL(library)
        libcrypt.crypt_gensalt.restype = ctypes.c_char_p
        libcrypt.crypt_gensalt.argtypes = [
            ctypes.c_char_p,
            ctypes.c_ulong,
            ctypes.c_char_p,
            ctypes.c_int,
        ]
        libcrypt.crypt.restype = ctypes.c_char_p
        libcrypt.crypt.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
        # Cost 5 (the minimum is 4) keeps each login check fast in tests.
        salt = libcrypt.crypt_gensalt(b"$2y$", 5, None, 0)
        result = libcrypt.crypt(password.encode(), salt) if salt else None
        if result and result.startswith(b"$2"):
            return str(result.decode())
    if shutil.which("htpasswd"):
        out = subprocess.run(
            ["htpasswd", "-nbB", "-C", "5", "user", password],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return out.strip().split(":", 1)[1]
    raise RuntimeError("no bcrypt: install the bcrypt package, libxcrypt or apache2-utils")


# --- token server ---------------------------------------------------------------


class TokenServer:
    """Issues registry JWTs (distribution's token spec) from a thread in this process.

    Logins are ``users``; anonymous requests get pull-only tokens when
    ``anonymous_pull``. Tokens grant the actions asked for, on any repository.
    The signing certificate is self-signed and goes in the registry's
    ``rootcertbundle``; each JWT carries it in its ``x5c`` header, which
    distribution 2.8 verifies against that bundle.
    """

    def __init__(
        self,
        directory: Path,
        users: Mapping[str, str],
        *,
        anonymous_pull: bool = False,
        expires_in: int = 300,
        refresh_tokens: Mapping[str, str] | None = None,
    ) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.users = dict(users)
        self.refresh_tokens = dict(refresh_tokens or {})
        """OAuth2 refresh token -> user, for the ``POST`` grant (``identitytoken`` logins)."""
        self.anonymous_pull = anonymous_pull
        self.expires_in = expires_in
        self.requests: list[tuple[str, str | None, str]] = []
        """(method, user or None, scope) of every token request, in order."""
        self._lock = threading.Lock()
        now = dt.datetime.now(dt.UTC)
        self._key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(TOKEN_ISSUER))
            .issuer_name(_name(TOKEN_ISSUER))
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self._key, hashes.SHA256())
        )
        self.cert_file = directory / "token-signing.pem"
        self.cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        self._x5c = [base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()]
        self._server = ThreadingHTTPServer((HOST, 0), self._handler())
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.realm = f"http://{HOST}:{self.port}/token"
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="token-server", daemon=True
        )
        self._thread.start()

    @property
    def request_count(self) -> int:
        with self._lock:
            return len(self.requests)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def issue(self, user: str | None, scopes: Sequence[str]) -> str:
        access: list[dict[str, Any]] = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            if kind != "repository" or not name:
                continue
            granted = actions.split(",") if user is not None else ["pull"]
            access.append({"type": kind, "name": name, "actions": granted})
        now = int(time.time())
        claims = {
            "iss": TOKEN_ISSUER,
            "sub": user or "",
            "aud": TOKEN_SERVICE,
            "iat": now,
            "nbf": now - 10,
            "exp": now + self.expires_in,
            "jti": uuid.uuid4().hex,
            "access": access,
        }
        return jwt.encode(claims, self._key, algorithm="ES256", headers={"x5c": self._x5c})

    def _login(self, authorization: str | None) -> tuple[bool, str | None]:
        """(accepted, user): no header is anonymous; a wrong password is refused."""
        if not authorization:
            return self.anonymous_pull, None
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() != "basic":
            return False, None
        try:
            user, _, password = base64.b64decode(value).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False, None
        expected = self.users.get(user)
        if expected is None or not secrets.compare_digest(expected, password):
            return False, None
        return True, user

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
                accepted, user = server._login(self.headers.get("Authorization"))
                scopes = query.get("scope", [])
                with server._lock:
                    server.requests.append(("GET", user, " ".join(scopes)))
                if not accepted:
                    self._answer(401, {"details": "login refused"})
                    return
                token = server.issue(user, scopes)
                self._answer(
                    200,
                    {
                        "token": token,
                        "access_token": token,
                        "expires_in": server.expires_in,
                        "issued_at": dt.datetime.now(dt.UTC).isoformat(),
                    },
                )

            def do_POST(self) -> None:
                # The OAuth2 refresh-token grant docker sends for identity tokens.
                length = min(int(self.headers.get("Content-Length") or 0), 64 * 1024)
                form = urllib.parse.parse_qs(self.rfile.read(length).decode(errors="replace"))
                refresh = form.get("refresh_token", [""])[0]
                user = server.refresh_tokens.get(refresh)
                scopes = form.get("scope", [])
                with server._lock:
                    server.requests.append(("POST", user, " ".join(scopes)))
                if form.get("grant_type") != ["refresh_token"] or user is None:
                    self._answer(401, {"error": "invalid_grant"})
                    return
                token = server.issue(user, scopes)
                self._answer(200, {"access_token": token, "expires_in": server.expires_in})

            def _answer(self, status: int, body: Mapping[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # the test's own assertions say what matters

        return Handler


# --- registry processes ---------------------------------------------------------


@dataclass
class RegistryServer:
    """One running ``docker-registry`` process."""

    address: str
    """host:port, what the client's ``registry`` argument takes."""
    root: Path
    process: subprocess.Popen[bytes]
    log_file: Path
    auth: Auth
    ca: TestCa | None = None
    username: str | None = None
    password: str | None = None
    token_server: TokenServer | None = None
    _stopped: bool = field(default=False, repr=False)

    @property
    def tls(self) -> bool:
        return self.ca is not None

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.address}"

    def log(self) -> str:
        return self.log_file.read_text(errors="replace")

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        if self.token_server is not None:
            self.token_server.stop()

    def skopeo_args(self, direction: Literal["src", "dest"]) -> list[str]:
        """Flags that let skopeo talk to this registry as the test user."""
        args: list[str] = []
        if self.ca is not None:
            args.append(f"--{direction}-cert-dir={self.ca.cert_dir}")
        else:
            # Plain HTTP: skopeo only falls back to it without TLS verification.
            args.append(f"--{direction}-tls-verify=false")
        if self.username is not None:
            args.append(f"--{direction}-creds={self.username}:{self.password}")
        return args


def _registry_config(
    root: Path,
    port: int,
    auth: Auth,
    ca: TestCa | None,
    htpasswd: Path | None,
    token_server: TokenServer | None,
    host: str = HOST,
) -> dict[str, Any]:
    http: dict[str, Any] = {"addr": f"{host}:{port}", "secret": secrets.token_hex(16)}
    if ca is not None:
        http["tls"] = {"certificate": str(ca.cert_file), "key": str(ca.key_file)}
    config: dict[str, Any] = {
        "version": 0.1,
        "log": {"level": "info", "formatter": "text"},
        "storage": {
            "filesystem": {"rootdirectory": str(root / "data")},
            "delete": {"enabled": True},
            # Upload purging is a background timer that tests have no use for.
            "maintenance": {"uploadpurging": {"enabled": False}},
        },
        "http": http,
    }
    if auth == "htpasswd":
        assert htpasswd is not None
        config["auth"] = {"htpasswd": {"realm": "headwater-test", "path": str(htpasswd)}}
    elif auth == "token":
        assert token_server is not None
        config["auth"] = {
            "token": {
                "realm": token_server.realm,
                "service": TOKEN_SERVICE,
                "issuer": TOKEN_ISSUER,
                "rootcertbundle": str(token_server.cert_file),
            }
        }
    return config


def _answers(url: str, ca: TestCa | None) -> bool:
    context = ssl.create_default_context(cafile=str(ca.ca_file)) if ca else None
    try:
        with urllib.request.urlopen(url, timeout=2, context=context):  # noqa: S310 - test-made URL
            return True
    except urllib.error.HTTPError as exc:
        return exc.code == 401  # up, and asking for a login
    except (OSError, ValueError):
        return False


def start_registry(
    root: Path,
    *,
    auth: Auth = "none",
    tls: bool = False,
    username: str = "tester",
    password: str | None = None,
    anonymous_pull: bool = False,
    refresh_tokens: Mapping[str, str] | None = None,
    notify: Mapping[str, Any] | None = None,
    port: int | None = None,
    host: str = HOST,
    startup_timeout: float = 30.0,
) -> RegistryServer:
    """Start a registry in ``root`` (a fresh directory) and wait until ``/v2/`` answers."""
    if shutil.which(REGISTRY_BINARY) is None:
        raise RuntimeError(f"{REGISTRY_BINARY} is not installed (Debian package docker-registry)")
    root.mkdir(parents=True, exist_ok=True)
    ca = make_ca(root / "tls") if tls else None
    password = password or secrets.token_urlsafe(12)
    htpasswd: Path | None = None
    token_server: TokenServer | None = None
    if auth == "htpasswd":
        htpasswd = root / "htpasswd"
        htpasswd.write_text(f"{username}:{bcrypt_hash(password)}\n")
    elif auth == "token":
        token_server = TokenServer(
            root / "token",
            {username: password},
            anonymous_pull=anonymous_pull,
            refresh_tokens=refresh_tokens,
        )
    last_log = ""
    try:
        wanted = port  # a restart on the same address (same data under root)
        for _attempt in range(3):
            port = wanted or free_port()
            config_file = root / "config.yml"
            config = _registry_config(root, port, auth, ca, htpasswd, token_server, host)
            if notify is not None:
                # One notification endpoint (distribution's `notifications.endpoints`).
                config["notifications"] = {"endpoints": [{"name": "headwater", **notify}]}
            config_file.write_text(json.dumps(config))  # JSON is YAML
            log_file = root / f"registry-{port}.log"
            with log_file.open("wb") as log_out:
                process = subprocess.Popen(
                    [REGISTRY_BINARY, "serve", str(config_file)],
                    stdout=log_out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                )
            server = RegistryServer(
                address=f"{host}:{port}",
                root=root,
                process=process,
                log_file=log_file,
                auth=auth,
                ca=ca,
                username=username if auth != "none" else None,
                password=password if auth != "none" else None,
                token_server=token_server,
            )
            deadline = time.monotonic() + startup_timeout
            while time.monotonic() < deadline and process.poll() is None:
                if _answers(f"{server.url}/v2/", ca):
                    return server
                time.sleep(0.05)
            last_log = server.log()
            # Stop only this process: the token server is reused by the next attempt.
            server.token_server = None
            server.stop()
            if "address already in use" not in last_log:
                break
    except BaseException:
        if token_server is not None:
            token_server.stop()
        raise
    if token_server is not None:
        token_server.stop()
    raise RuntimeError(f"{REGISTRY_BINARY} did not start in {root}; its log:\n{last_log[-6000:]}")


@contextlib.contextmanager
def running_registry(root: Path, **kwargs: Any) -> Iterator[RegistryServer]:
    server = start_registry(root, **kwargs)
    try:
        yield server
    finally:
        server.stop()


# --- images -----------------------------------------------------------------------


@dataclass(frozen=True)
class ImageSpec:
    """One small image: a config and a single layer holding one file."""

    platform: str = "linux/amd64"
    content: bytes = b"hello\n"
    """The layer's one file; images with different content have different digests."""
    labels: Mapping[str, str] = field(default_factory=dict, hash=False)
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ("/hello",)
    user: str = ""
    exposed_ports: tuple[str, ...] = ()
    env: tuple[str, ...] = ("PATH=/usr/bin:/bin",)
    working_dir: str = ""
    created: str = "2024-05-06T07:08:09.123456789Z"


@dataclass(frozen=True)
class WrittenImage:
    digest: str
    size: int
    config_digest: str
    platform: str
    image_size: int
    """config + layer sizes, what the client reports as the image's size."""


@dataclass(frozen=True)
class OciLayout:
    """An OCI image layout on disk with one reference, what skopeo copies from."""

    path: Path
    ref: str
    digest: str
    """The digest of the top manifest (the index, for a multi-platform layout)."""
    media_type: str
    images: tuple[WrittenImage, ...]

    @property
    def skopeo_source(self) -> str:
        return f"oci:{self.path}:{self.ref}"


def _layer(content: bytes) -> bytes:
    tar_bytes = io.BytesIO()
    with tarfile.open(fileobj=tar_bytes, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("hello")
        info.size = len(content)
        info.mode = 0o755
        tar.addfile(info, io.BytesIO(content))
    # mtime=0: the same content gives the same digest.
    return gzip.compress(tar_bytes.getvalue(), mtime=0)


def _canonical(doc: Mapping[str, Any]) -> bytes:
    return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()


def write_oci_layout(
    directory: Path, images: Sequence[ImageSpec], *, index: bool = False, ref: str = "latest"
) -> OciLayout:
    """Write ``images`` as an OCI layout; ``index`` (or several images) makes an image index."""
    if not images:
        raise ValueError("no images")
    blobs = directory / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    (directory / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')

    def put(data: bytes) -> tuple[str, int]:
        digest = sha256_digest(data)
        (blobs / digest.removeprefix("sha256:")).write_bytes(data)
        return digest, len(data)

    written: list[WrittenImage] = []
    descriptors: list[dict[str, Any]] = []
    for spec in images:
        os_name, arch, *variant = spec.platform.split("/")
        layer = _layer(spec.content)
        layer_digest, layer_size = put(layer)
        diff_id = sha256_digest(gzip.decompress(layer))
        container_config: dict[str, Any] = {"Env": list(spec.env), "Cmd": list(spec.cmd)}
        if spec.entrypoint:
            container_config["Entrypoint"] = list(spec.entrypoint)
        if spec.user:
            container_config["User"] = spec.user
        if spec.exposed_ports:
            container_config["ExposedPorts"] = {port: {} for port in spec.exposed_ports}
        if spec.working_dir:
            container_config["WorkingDir"] = spec.working_dir
        if spec.labels:
            container_config["Labels"] = dict(spec.labels)
        config_doc: dict[str, Any] = {
            "created": spec.created,
            "architecture": arch,
            "os": os_name,
            "config": container_config,
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
            "history": [{"created": spec.created, "created_by": "headwater tests"}],
        }
        if variant:
            config_doc["variant"] = variant[0]
        config_digest, config_size = put(_canonical(config_doc))
        manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": config_size},
            "layers": [{"mediaType": OCI_LAYER_GZIP, "digest": layer_digest, "size": layer_size}],
        }
        digest, size = put(_canonical(manifest))
        written.append(
            WrittenImage(digest, size, config_digest, spec.platform, config_size + layer_size)
        )
        platform: dict[str, str] = {"os": os_name, "architecture": arch}
        if variant:
            platform["variant"] = variant[0]
        descriptors.append(
            {"mediaType": OCI_MANIFEST, "digest": digest, "size": size, "platform": platform}
        )
    if index or len(images) > 1:
        top_digest, top_size = put(
            _canonical({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": descriptors})
        )
        top_type = OCI_INDEX
    else:
        top_digest, top_size, top_type = written[0].digest, written[0].size, OCI_MANIFEST
    layout_index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": top_type,
                "digest": top_digest,
                "size": top_size,
                "annotations": {"org.opencontainers.image.ref.name": ref},
            }
        ],
    }
    (directory / "index.json").write_text(json.dumps(layout_index))
    return OciLayout(directory, ref, top_digest, top_type, tuple(written))


def skopeo_copy(source: str, server: RegistryServer, repository: str, tag: str) -> None:
    """``skopeo copy --all --preserve-digests`` to ``repository:tag`` on ``server``."""
    result = subprocess.run(
        [
            "skopeo",
            "--insecure-policy",
            "copy",
            "--quiet",
            "--all",
            "--preserve-digests",
            *server.skopeo_args("dest"),
            source,
            f"docker://{server.address}/{repository}:{tag}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"skopeo copy {source} -> {server.address}/{repository}:{tag} failed:\n"
            f"{result.stderr[-4000:]}\nregistry log:\n{server.log()[-3000:]}"
        )


def push_images(
    server: RegistryServer,
    repository: str,
    tag: str,
    images: Sequence[ImageSpec],
    *,
    index: bool = False,
    workdir: Path,
) -> OciLayout:
    """Write ``images`` as a layout in ``workdir`` and push it as ``repository:tag``."""
    layout = write_oci_layout(workdir / f"layout-{uuid.uuid4().hex[:8]}", images, index=index)
    skopeo_copy(layout.skopeo_source, server, repository, tag)
    return layout


def skopeo_raw_digest(server: RegistryServer, repository: str, reference: str) -> str:
    """sha256 of ``skopeo inspect --raw``: the digest of what the registry serves."""
    separator = "@" if ":" in reference else ":"
    result = subprocess.run(
        [
            "skopeo",
            "--insecure-policy",
            "inspect",
            "--raw",
            *[a.replace("--src-", "--") for a in server.skopeo_args("src")],
            f"docker://{server.address}/{repository}{separator}{reference}",
        ],
        capture_output=True,
        timeout=120,
    )
    if result.returncode != 0:
        raise RuntimeError(f"skopeo inspect failed: {result.stderr.decode(errors='replace')}")
    return sha256_digest(result.stdout)


def cached_image_archive(name: str) -> Path | None:
    """The OCI archive ``hack/cluster/images.py`` built for ``name``, if this machine has one."""
    found = sorted(IMAGE_CACHE.glob(f"{name}-*.tar"))
    return found[-1] if found else None
