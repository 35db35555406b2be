"""A writer process for the crash tests: streams numbered chunks into a draft forever.

Usage: python crash_writer.py DB_URL SESSION_ID MESSAGE_ID EVERY_CHUNKS EVERY_SECONDS DELAY
       [JOURNAL SPILL_AFTER]
Prints the number of chunks appended so far after each append (the parent kills it).
"""

from __future__ import annotations

import sys
import time

from chatpersist import ChatStore


def chunk(i: int) -> str:
    return f"w{i} "


def main() -> None:
    url, sid, mid = sys.argv[1:4]
    every_chunks, every_seconds, delay = int(sys.argv[4]), float(sys.argv[5]), float(sys.argv[6])
    journal = sys.argv[7] if len(sys.argv) > 7 else None
    spill_after = float(sys.argv[8]) if len(sys.argv) > 8 else 10.0
    store = ChatStore(
        url,
        every_chunks=every_chunks,
        every_seconds=every_seconds,
        journal=journal,
        spill_after=spill_after,
    )
    with store.draft(sid, message_id=mid) as d:
        print("open", flush=True)
        i = 0
        while True:
            d.append(chunk(i))
            i += 1
            print(i, flush=True)
            time.sleep(delay)


if __name__ == "__main__":
    main()
