#!/bin/sh
# Managed by kubefab: healthy when HAProxy accepts connections on the API port of this host.
# bash's /dev/tcp is used instead of netstat, which is not installed by default on current distributions.
exec timeout 2 bash -c '</dev/tcp/127.0.0.1/8443' 2>/dev/null
