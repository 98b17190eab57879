#!/usr/bin/env python3
"""Independent crypto peer for kmsd's interop tests, built on Python `cryptography` (OpenSSL).

Reads one JSON request per line on stdin and answers one JSON line each:
  {"op":"verify","alg":"RSASSA_PSS_SHA_256","spki":b64,"message":b64,"digest":false,"signature":b64} -> {"valid":bool}
  {"op":"oaep_encrypt","hash":"SHA_256","spki":b64,"plaintext":b64} -> {"ciphertext":b64}
  {"op":"ecdh_keypair","curve":"P256"} -> {"spki":b64,"private":b64 (PKCS#8)}
  {"op":"ecdh","private":b64,"peer_spki":b64} -> {"secret":b64}
  {"op":"check_pair","private":b64,"spki":b64} -> {"match":bool,"type":str}
  {"op":"hmac","hash":"SHA_256","key":b64,"message":b64} -> {"mac":b64}
"""
import base64
import json
import sys

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, hmac, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa, utils

b = base64.b64decode
e = lambda x: base64.b64encode(x).decode()
HASH = {"256": hashes.SHA256, "384": hashes.SHA384, "512": hashes.SHA512, "224": hashes.SHA224, "1": hashes.SHA1}


def hash_of(name):
    return HASH[name.rsplit("_", 1)[1]]()


def verify(req):
    key = serialization.load_der_public_key(b(req["spki"]))
    alg, msg, sig = req["alg"], b(req["message"]), b(req["signature"])
    try:
        if alg.startswith("ED25519"):
            key.verify(sig, msg)
            return {"valid": True}
        h = hash_of(alg)
        data_hash = utils.Prehashed(h) if req.get("digest") else h
        if alg.startswith("RSASSA_PSS"):
            key.verify(sig, msg, padding.PSS(mgf=padding.MGF1(h), salt_length=h.digest_size), data_hash)
        elif alg.startswith("RSASSA_PKCS1"):
            key.verify(sig, msg, padding.PKCS1v15(), data_hash)
        else:
            key.verify(sig, msg, ec.ECDSA(data_hash))
        return {"valid": True}
    except InvalidSignature:
        return {"valid": False}


def handle(req):
    op = req["op"]
    if op == "verify":
        return verify(req)
    if op == "oaep_encrypt":
        key = serialization.load_der_public_key(b(req["spki"]))
        h = hash_of(req["hash"])
        return {"ciphertext": e(key.encrypt(b(req["plaintext"]), padding.OAEP(mgf=padding.MGF1(h), algorithm=h, label=None)))}
    if op == "ecdh_keypair":
        curve = {"P256": ec.SECP256R1, "P384": ec.SECP384R1, "P521": ec.SECP521R1}[req["curve"]]()
        k = ec.generate_private_key(curve)
        return {
            "spki": e(k.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)),
            "private": e(k.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())),
        }
    if op == "ecdh":
        k = serialization.load_der_private_key(b(req["private"]), password=None)
        peer = serialization.load_der_public_key(b(req["peer_spki"]))
        return {"secret": e(k.exchange(ec.ECDH(), peer))}
    if op == "check_pair":
        k = serialization.load_der_private_key(b(req["private"]), password=None)
        pub = k.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        return {"match": pub == b(req["spki"]), "type": type(k).__name__}
    if op == "hmac":
        m = hmac.HMAC(b(req["key"]), hash_of(req["hash"]))
        m.update(b(req["message"]))
        return {"mac": e(m.finalize())}
    raise ValueError("unknown op " + op)


for line in sys.stdin:
    if line.strip():
        print(json.dumps(handle(json.loads(line))), flush=True)
