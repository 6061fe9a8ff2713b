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


def _leaf(d, name, san):
    with open(os.path.join(d, name + ".ext"), "w") as f:
        f.write("subjectAltName=%s\nbasicConstraints=CA:FALSE\n"
                "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n" % san)
    _ossl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
          "-keyout", name + ".key", "-out", name + ".csr", "-subj", "/CN=" + name, cwd=d)
    _ossl("x509", "-req", "-in", name + ".csr", "-CA", "ca.pem", "-CAkey", "ca.key",
          "-CAcreateserial", "-out", name + ".pem", "-days", "2", "-extfile", name + ".ext",
          cwd=d)


def make_pki(d):
    """Under d: ca.pem (the test CA), other_ca.pem (a CA that signed nothing here), server.pem
    and server.key (for localhost and 127.0.0.1, signed by ca), elsewhere.pem and elsewhere.key
    (signed by ca, but for elsewhere.test only). Returns a dict of the paths."""
    d = str(d)
    _ca(d, "ca")
    _ca(d, "other_ca")
    _leaf(d, "server", "DNS:localhost,IP:127.0.0.1")
    _leaf(d, "elsewhere", "DNS:elsewhere.test")
    return {k: os.path.join(d, v) for k, v in
            (("ca", "ca.pem"), ("other_ca", "other_ca.pem"), ("cert", "server.pem"),
             ("key", "server.key"), ("elsewhere_cert", "elsewhere.pem"),
             ("elsewhere_key", "elsewhere.key"))}


class TlsFront:
    """tls_front.py in front of upstream_port (fault: see tls_front.py). .port, .stop()."""

    def __init__(self, pki, upstream_port=0, fault="none", cert="cert", key="key"):
        cmd = [sys.executable, TLS_FRONT, "--port", "0", "--fault", fault,
               "--upstream-port", str(upstream_port)]
        if pki:
            cmd += ["--cert", pki[cert], "--key", pki[key]]
        self.proc, self.port = start_server(cmd)

    def stop(self):
        stop_server(self.proc)
