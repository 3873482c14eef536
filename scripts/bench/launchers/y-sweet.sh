#!/bin/sh
# Launches y-sweet in memory (no store argument) on 127.0.0.1 for weft-bench. y-sweet cannot listen
# on port 0, so a free port is picked first; weft-bench waits until the port accepts connections.
# Usage: y-sweet.sh PATH-TO-Y-SWEET-BINARY
set -eu
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
echo "listening on http://127.0.0.1:$port"
exec "$1" serve --host 127.0.0.1 --port "$port"
