"""One line per check; the first failure ends the run (shared by the conformance scripts)."""
import sys

passed = 0


def check(name, condition, detail=""):
    global passed
    if not condition:
        print(f"FAIL {name}: {detail}")
        sys.exit(1)
    passed += 1
    print(f"ok   {name}")
