"""wss:// test fixtures, for tests/loadgen and tests/clients: a throwaway PKI made with the
openssl CLI by tests/engine/tls_certs.py (a test CA, a server certificate for localhost and 127.0.0.1, and a second CA that
signed nothing), and tls_front.py, a TLS terminator in front of the real cleartext engine."""
import os
import sys

from lg_helpers import start_server, stop_server

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "engine"))
from tls_certs import CertAuthority  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
TLS_FRONT = os.path.join(HERE, "tls_front.py")


def make_pki(d):
    """Under d: ca.pem (the test CA), other_ca.pem (a CA that signed nothing here), server.pem
    and server.key (for localhost and 127.0.0.1, signed by ca), elsewhere.pem and elsewhere.key
    (signed by ca, but for elsewhere.test only). Returns a dict of the paths."""
    ca = CertAuthority(d)
    other = CertAuthority(os.path.join(str(d), "other"))
    cert, key = ca.issue("server")
    ecert, ekey = ca.issue("elsewhere", cn="elsewhere", san="DNS:elsewhere.test")
    return {"ca": ca.pem, "other_ca": other.pem, "cert": cert, "key": key,
            "elsewhere_cert": ecert, "elsewhere_key": ekey}


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
