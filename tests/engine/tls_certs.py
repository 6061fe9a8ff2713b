"""A throwaway test CA and server certificates, made with the `openssl` command line.

Nothing is committed: every test run makes its own, valid for two days, so no certificate in
the repository can expire. Shared by tests/engine/test_tls.py and the browser/Node tests in
tests/clients (which add this directory to sys.path).
"""

import base64
import hashlib
import os
import ssl
import subprocess


def _openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=30)


class CertAuthority:
    """A CA in directory d: ca.pem (trust this), ca.key; issue() makes server certificates."""

    def __init__(self, d):
        self.dir = str(d)
        os.makedirs(self.dir, exist_ok=True)
        self.pem = os.path.join(self.dir, "ca.pem")
        self.key = os.path.join(self.dir, "ca.key")
        self.serial = 1
        _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                 "-keyout", self.key, "-out", self.pem, "-days", "2",
                 "-subj", "/CN=ringcast test CA",
                 "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=self.dir)

    def issue(self, name, cn="localhost", keytype="ec", san="IP:127.0.0.1,DNS:localhost"):
        """Writes NAME.pem (certificate) and NAME.key for the subjectAltName san (by default
        127.0.0.1 and localhost); returns both paths."""
        cert = os.path.join(self.dir, name + ".pem")
        key = os.path.join(self.dir, name + ".key")
        csr = os.path.join(self.dir, name + ".csr")
        ext = os.path.join(self.dir, name + ".ext")
        with open(ext, "w") as f:
            f.write("subjectAltName=" + san + "\n"
                    "basicConstraints=critical,CA:FALSE\n"
                    "keyUsage=critical,digitalSignature\n"
                    "extendedKeyUsage=serverAuth\n")
        newkey = (["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"] if keytype == "ec"
                  else ["-newkey", "rsa:2048"])
        _openssl("req", *newkey, "-nodes", "-keyout", key, "-out", csr, "-subj", "/CN=" + cn,
                 cwd=self.dir)
        self.serial += 1
        _openssl("x509", "-req", "-in", csr, "-CA", self.pem, "-CAkey", self.key,
                 "-set_serial", str(self.serial), "-days", "2", "-extfile", ext, "-out", cert,
                 cwd=self.dir)
        return cert, key

    def client_context(self, **kw):
        """An SSLContext that trusts only this CA (hostname checked against 127.0.0.1)."""
        ctx = ssl.create_default_context(cafile=self.pem)
        for k, v in kw.items():
            setattr(ctx, k, v)
        return ctx


def spki_sha256_b64(cert_path):
    """base64(sha256(SubjectPublicKeyInfo)): what Chromium's
    --ignore-certificate-errors-spki-list takes."""
    der = subprocess.run(["openssl", "x509", "-in", cert_path, "-pubkey", "-noout"],
                         check=True, capture_output=True, timeout=30).stdout
    spki = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "DER"], input=der,
                          check=True, capture_output=True, timeout=30).stdout
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()
