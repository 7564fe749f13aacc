"""Every store's durability against a writer process killed with kill -9 (SQLite and etcd)."""

import asyncio
import os
import signal
import subprocess
import sys
import textwrap

from sendo.store import open_store


def test_acknowledged_writes_survive_kill_9(store_url):
    """A writer prints each acknowledged revision; after kill -9 every printed one is there."""
    code = textwrap.dedent(f"""
        import asyncio, sys
        from sendo.store import open_store
        async def main():
            s = open_store({store_url!r}); await s.start()
            i = 0
            while True:
                kvs = await asyncio.gather(*[s.create(f"/k/{{i+j}}", b"v") for j in range(10)])
                i += 10
                print(i, max(kv.mod_rev for kv in kvs), flush=True)
        asyncio.run(main())
    """)
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        acked = acked_rev = 0
        for line in p.stdout:
            acked, acked_rev = map(int, line.split())
            if acked >= 300:
                break
    finally:
        os.kill(p.pid, signal.SIGKILL)
        p.wait()

    async def check():
        s = open_store(store_url)
        await s.start()
        try:
            assert s.revision >= acked_rev
            assert await s.count("/k/") >= acked
        finally:
            await s.close()
    asyncio.run(check())
