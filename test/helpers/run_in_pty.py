# Runs a command in a pseudo-terminal, waits until its screen shows every expected text, types keys,
# and reports (as JSON on stdout) the exit code, what it drew, and the terminal's modes after it exited.
import json, os, pty, select, sys, termios, time, struct, fcntl

spec = json.loads(sys.argv[1])
pid, fd = pty.fork()
if pid == 0:
    os.execvp(spec["argv"][0], spec["argv"])
fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", spec.get("rows", 30), spec.get("cols", 120), 0, 0))
out = b""
deadline = time.time() + spec.get("timeout", 30)

def pump(until):
    global out
    while time.time() < until:
        r, _, _ = select.select([fd], [], [], 0.05)
        if r:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                return False
            if not chunk:
                return False
            out += chunk
        if all(w.encode() in out for w in spec["wait_for"]):
            return True
    return False

ready = pump(deadline)
time.sleep(spec.get("settle", 0.3))
pump(time.time() + 0.1)
modes_before = termios.tcgetattr(fd)[3]
os.write(fd, spec["keys"].encode())
status = None
while time.time() < deadline:
    try:
        r, _, _ = select.select([fd], [], [], 0.05)
        if r:
            out += os.read(fd, 65536)
    except OSError:
        pass
    done, st = os.waitpid(pid, os.WNOHANG)
    if done:
        status = st
        break
try:
    while True:
        r, _, _ = select.select([fd], [], [], 0.05)
        if not r:
            break
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        out += chunk
except OSError:
    pass
if status is None:
    os.kill(pid, 9)
    os.waitpid(pid, 0)
modes_after = termios.tcgetattr(fd)[3] if status is not None else modes_before
print(json.dumps({
    "ready": ready,
    "code": os.waitstatus_to_exitcode(status) if status is not None else None,
    "output": out.decode("utf-8", "replace"),
    "raw_while_running": (modes_before & termios.ICANON) == 0,
    "canonical_after": (modes_after & termios.ICANON) != 0,
    "echo_after": (modes_after & termios.ECHO) != 0,
}))
