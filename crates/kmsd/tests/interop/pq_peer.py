#!/usr/bin/env python3
"""Independent post-quantum peer for kmsd's interop tests: `kyber-py` (ML-KEM, FIPS 203) and
`dilithium-py` (ML-DSA, FIPS 204), pure-Python implementations that share no code with AWS-LC;
their PKCS#8/SPKI readers need `ecdsa` (for its DER helpers).

Reads one JSON request per line on stdin and answers one JSON line each:
  {"op":"kem_encaps","spki":b64} -> {"ciphertext":b64,"secret":b64}
  {"op":"kem_pair","private":b64,"spki":b64} -> {"match":bool,"seed_form":bool}
  {"op":"kem_decaps","private":b64,"ciphertext":b64} -> {"secret":b64}
  {"op":"dsa_verify","spki":b64,"message":b64,"signature":b64} -> {"valid":bool}
  {"op":"dsa_mu","spki":b64,"message":b64} -> {"mu":b64}  (FIPS 204 external mu, empty context)
"""
import base64
import json
import sys

from dilithium_py.ml_dsa.pkcs import pk_from_der
from kyber_py.ml_kem.pkcs import dk_from_der, ek_from_der

b = base64.b64decode
e = lambda x: base64.b64encode(x).decode()


def handle(req):
    op = req["op"]
    if op == "kem_encaps":
        kem, ek = ek_from_der(b(req["spki"]))
        secret, ciphertext = kem.encaps(ek)
        return {"ciphertext": e(ciphertext), "secret": e(secret)}
    if op == "kem_pair":
        kem, _dk, seed, ek = dk_from_der(b(req["private"]))
        kem2, ek2 = ek_from_der(b(req["spki"]))
        return {"match": kem is kem2 and ek == ek2, "seed_form": seed is not None}
    if op == "kem_decaps":
        kem, dk, _seed, _ek = dk_from_der(b(req["private"]))
        return {"secret": e(kem.decaps(dk, b(req["ciphertext"])))}
    if op == "dsa_verify":
        dsa, pk = pk_from_der(b(req["spki"]))
        return {"valid": bool(dsa.verify(pk, b(req["message"]), b(req["signature"])))}
    if op == "dsa_mu":
        dsa, pk = pk_from_der(b(req["spki"]))
        return {"mu": e(dsa.prehash_external_mu(pk, b(req["message"])))}
    raise ValueError(f"unknown op {op}")


for line in sys.stdin:
    print(json.dumps(handle(json.loads(line))), flush=True)
