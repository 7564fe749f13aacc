"""The SQLite revision-log store's durability against a writer process killed with kill -9."""

import asyncio
import os
import signal
import subprocess
import sys
import textwrap

from sendo.store.sqlite import SQLiteStore


def test_acknowledged_writes_survive_kill_9(tmp_path):
    """A writer prints each acknowledged revision; after kill -9 every printed one is there."""
    path = str(tmp_path / "s.db")
    code = textwrap.dedent(f"""
        import asyncio, sys
        from sendo.store.sqlite import SQLiteStore
        async def main():
            s = SQLiteStore({path!r}); await s.start()
            i = 0
            while True:
                kvs = await asyncio.gather(*[s.create(f"/k/{{i+j}}", b"v") for j in range(10)])
                i += 10
                print(max(kv.mod_rev for kv in kvs), flush=True)
        asyncio.run(main())
    """)
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        acked = 0
        for line in p.stdout:
            acked = int(line)
            if acked >= 300:
                break
    finally:
        os.kill(p.pid, signal.SIGKILL)
        p.wait()

    async def check():
        s = SQLiteStore(path)
        await s.start()
        try:
            assert s.revision >= acked
            assert await s.count("/k/") >= acked
        finally:
            await s.close()
    asyncio.run(check())
