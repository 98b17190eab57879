#!/usr/bin/env python3
"""Memory of kmsd's key cache: RSS of a --dev server before and after one Encrypt with each of
N keys, for a cache that holds them all and for one that holds 100 (what the store itself
costs). The difference of the two growths divided by N is what one cached key costs.

    python3 scripts/bench/key_cache_rss.py target/release/kmsd [N]

Needs boto3. Starts its servers on 127.0.0.1:4781 in temporary data dirs and removes them."""
import concurrent.futures as cf
import shutil
import subprocess
import sys
import tempfile
import time

import boto3
import botocore.config


def growth(kmsd, n, cache_size):
    d = tempfile.mkdtemp(prefix="kmsd-rss-")
    p = subprocess.Popen(
        [kmsd, "serve", "--dev", "--no-mlock", "--listen", "127.0.0.1:4781", "--data-dir", d,
         "--key-cache-size", str(cache_size), "--audit-durability", "buffered", "--quotas", "off"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def rss_kib():
        with open(f"/proc/{p.pid}/status") as f:
            return next(int(l.split()[1]) for l in f if l.startswith("VmRSS"))

    try:
        c = boto3.client(
            "kms", endpoint_url="http://127.0.0.1:4781", region_name="us-east-1",
            aws_access_key_id="AKIAEXAMPLE", aws_secret_access_key="x",
            config=botocore.config.Config(max_pool_connections=16, retries={"max_attempts": 10}))
        for _ in range(100):
            try:
                c.list_keys()
                break
            except Exception:
                time.sleep(0.2)
        with cf.ThreadPoolExecutor(8) as ex:
            ids = list(ex.map(lambda _: c.create_key()["KeyMetadata"]["KeyId"], range(n)))
        time.sleep(2)
        before = rss_kib()
        with cf.ThreadPoolExecutor(8) as ex:
            list(ex.map(lambda k: c.encrypt(KeyId=k, Plaintext=b"x"), ids))
        time.sleep(2)
        return rss_kib() - before
    finally:
        p.terminate()
        p.wait()
        shutil.rmtree(d)


def main():
    kmsd = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 10000
    cached = growth(kmsd, n, 2 * n)
    uncached = growth(kmsd, n, 100)
    print(f"{n} keys: RSS +{cached} KiB with every key cached, +{uncached} KiB with a cache of "
          f"100; {(cached - uncached) * 1024 / n:.0f} bytes per cached key")


if __name__ == "__main__":
    main()
