"""A DNS lookup run on a host, with the Python every supported distribution has (dnf and yum are written in
it; RHEL 8 keeps it as platform-python): the add-ons phase asks the cluster DNS Service for a name, through
kube-proxy's rules, as a pod would. No dig or nslookup needed on the hosts."""

from __future__ import annotations

import shlex

# Prints the A records of argv[1] from server argv[2] and exits 0 when there is at least one (rcode 0).
LOOKUP = r"""
import random, socket, struct, sys
name, server = sys.argv[1], sys.argv[2]
qid = random.randint(0, 65535)
query = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
query += b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0" + struct.pack(">HH", 1, 1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(3)
s.sendto(query, (server, 53))
data = s.recv(4096)
rid, flags, qd, an = struct.unpack(">HHHH", data[:8])
if rid != qid or flags & 0xF:
    sys.exit("rcode %d" % (flags & 0xF))
pos = 12
def skip(pos):
    while data[pos]:
        if data[pos] >= 0xC0:
            return pos + 2
        pos += data[pos] + 1
    return pos + 1
for _ in range(qd):
    pos = skip(pos) + 4
found = []
for _ in range(an):
    pos = skip(pos)
    rtype, _, _, size = struct.unpack(">HHIH", data[pos:pos + 10])
    pos += 10
    if rtype == 1:
        found.append(socket.inet_ntoa(data[pos:pos + size]))
    pos += size
print(" ".join(found))
sys.exit(0 if found else "no A record")
"""


def query_command(name: str, server: str) -> str:
    python = "$(command -v python3 || echo /usr/libexec/platform-python)"
    return f"{python} -c {shlex.quote(LOOKUP)} {shlex.quote(name)} {shlex.quote(server)}"
