#!/usr/bin/env python3
"""Independent implementation of kmsd's envelope format (see crates/kms-core/src/envelope.rs),
used to write crates/kms-core/tests/vectors/envelope.json. Uses Python `cryptography`."""
import json
import struct
from cryptography.hazmat.primitives.ciphers.aead import AESGCM


def canonical(ctx):
    out = struct.pack(">I", len(ctx))
    for k in sorted(ctx, key=lambda s: s.encode()):
        kb, vb = k.encode(), ctx[k].encode()
        out += struct.pack(">I", len(kb)) + kb + struct.pack(">I", len(vb)) + vb
    return out


def vector(desc, key, key_id, material_id, iv, ctx, pt):
    kid = bytes.fromhex(key_id.replace("mrk-", "").replace("-", ""))
    header = b"\x01" + kid + material_id
    ct = AESGCM(key).encrypt(iv, pt, header + canonical(ctx))
    return {
        "description": desc,
        "key_hex": key.hex(),
        "key_id": key_id,
        "material_id_hex": material_id.hex(),
        "context": ctx,
        "plaintext_hex": pt.hex(),
        "envelope_hex": (header + iv + ct).hex(),
    }


vs = [
    vector("no context", bytes(range(32)), "1234abcd-12ab-34cd-56ef-1234567890ab", bytes([0xAA] * 16),
           bytes(range(12)), {}, b"hello"),
    vector("two pairs given out of order", bytes([7] * 32), "0f0e0d0c-0b0a-4908-8706-050403020100",
           bytes(range(16)), bytes([9] * 12), {"purpose": "test", "AppName": "kmsd"}, b"\x00" * 32),
    vector("multi-Region key, unicode context", bytes([0x42] * 32), "mrk-1234abcd12ab34cd56ef1234567890ab",
           bytes([1] * 16), bytes([3] * 12), {"k\u00e9y": "v\u00e4lue", "": "empty key"}, bytes(range(256)) * 4),
]
json.dump(vs, open("crates/kms-core/tests/vectors/envelope.json", "w"), indent=1, ensure_ascii=False)
print("wrote", len(vs), "vectors")
