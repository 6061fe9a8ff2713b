"""wss:// test fixtures, for tests/loadgen and tests/clients: a throwaway PKI made with the
openssl CLI (a test CA, a server certificate for localhost and 127.0.0.1, and a second CA that
signed nothing), and tls_front.py, a TLS terminator in front of the real cleartext engine."""
import os
import subprocess
import sys

from lg_helpers import start_server, stop_server

HERE = os.path.dirname(os.path.abspath(__file__))
TLS_FRONT = os.path.join(HERE, "tls_front.py")


def _ossl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=30)


def _ca(d, name):
    _ossl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
          "-keyout", name + ".key", "-out", name + ".pem", "-days", "2",
          "-subj", "/CN=ringcast test " + name,
          "-addext", "basicConstraints=critical,CA:TRUE",
          "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)


def make_pki(d):
    """Writes ca.pem, other_ca.pem, server.pem and server.key under d; returns a dict of paths."""
    d = str(d)
    _ca(d, "ca")
    _ca(d, "other_ca")
    with open(os.path.join(d, "server.ext"), "w") as f:
        f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
                "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n")
    _ossl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
          "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost", cwd=d)
    _ossl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
          "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "server.ext", cwd=d)
    return {k: os.path.join(d, v) for k, v in
            (("ca", "ca.pem"), ("other_ca", "other_ca.pem"), ("cert", "server.pem"),
             ("key", "server.key"))}


class TlsFront:
    """tls_front.py in front of upstream_port (fault: see tls_front.py). .port, .stop()."""

    def __init__(self, pki, upstream_port=0, fault="none"):
        cmd = [sys.executable, TLS_FRONT, "--port", "0", "--fault", fault,
               "--upstream-port", str(upstream_port)]
        if pki:
            cmd += ["--cert", pki["cert"], "--key", pki["key"]]
        self.proc, self.port = start_server(cmd)

    def stop(self):
        stop_server(self.proc)
