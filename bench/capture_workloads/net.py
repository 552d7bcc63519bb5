# Loopback TCP: 1.5 GiB sent in 256 KiB writes (skb page frags: order-3 allocations).
import socket, sys, threading
N = int(sys.argv[1]) if len(sys.argv) > 1 else 1536
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(1)
port = srv.getsockname()[1]
def sink():
    c, _ = srv.accept(); b = bytearray(1 << 18); v = memoryview(b)
    while c.recv_into(v): pass
t = threading.Thread(target=sink); t.start()
s = socket.create_connection(("127.0.0.1", port)); buf = b"x" * (1 << 18)
for _ in range(N * 4): s.sendall(buf)
s.close(); t.join()
