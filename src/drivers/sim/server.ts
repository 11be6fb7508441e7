/**
 * A sim host served over a unix socket, so several operator processes (the
 * replicas of a sharded operator, in tests and `bench scale --replicas`)
 * share one simulated hypervisor the way they would share a real one: its
 * state, its call log and its events live in the server process, and a step
 * applied twice by two replicas shows up twice in the log.
 *
 * One client connection serves one inventory, `<inventoryDir>/<name>.yaml`,
 * named by the client's first request (`connect`). Names are allowlisted
 * (the server never opens a path a client spelled out).
 */
import { createServer, type Server, type Socket } from 'node:net';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import type { DriverEvent, VMHandle } from '../driver.ts';
import type { Step, VMRef } from '../../model/memory.ts';
import { SimDriver } from './driver.ts';
import { LineReader, decode, encode, toWireError, type SimRequest } from './wire.ts';

export const SIM_INVENTORY_NAME = /^[a-z0-9][a-z0-9-]{0,62}$/;

export interface SimServer {
  readonly socketPath: string;
  /** The inventory file a name resolves to (the out-of-band handle is simHost(thatPath)). */
  inventoryPath(name: string): string;
  close(): Promise<void>;
}

export async function startSimServer(opts: { socketPath: string; inventoryDir: string }): Promise<SimServer> {
  rmSync(opts.socketPath, { force: true });
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    serveConnection(socket, opts.inventoryDir);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.socketPath, () => resolve());
  });
  return {
    socketPath: opts.socketPath,
    inventoryPath: (name) => join(opts.inventoryDir, `${name}.yaml`),
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      rmSync(opts.socketPath, { force: true });
    },
  };
}

function serveConnection(socket: Socket, inventoryDir: string): void {
  let driver: SimDriver | undefined;
  let unsubscribe: (() => Promise<void>) | undefined;
  socket.setEncoding('utf8');
  const send = (message: unknown) => {
    if (!socket.destroyed) socket.write(`${encode(message)}\n`);
  };
  const handle = async (req: SimRequest): Promise<unknown> => {
    if (req.method === 'connect') {
      const [name, timeoutMs] = req.args as [unknown, unknown];
      if (typeof name !== 'string' || !SIM_INVENTORY_NAME.test(name)) throw new Error(`inventory name ${JSON.stringify(name)} is not [a-z0-9-] (at most 63)`);
      driver = new SimDriver({ uri: `sim://${join(inventoryDir, `${name}.yaml`)}`, ...(typeof timeoutMs === 'number' ? { timeoutMs } : {}) });
      await driver.connect();
      return null;
    }
    if (!driver) throw new Error(`${req.method} before connect`);
    const d = driver;
    switch (req.method) {
      case 'identify':
        return d.identify();
      case 'lookup':
        return d.lookup(req.args[0] as VMRef);
      case 'observe':
        return d.observe(req.args[0] as VMHandle);
      case 'observeAll':
        return d.observeAll();
      case 'apply':
        return d.apply(req.args[0] as VMHandle, req.args[1] as Step[]);
      case 'subscribe':
        unsubscribe ??= await d.events((event: DriverEvent) => send({ event }));
        return null;
      case 'close':
        await unsubscribe?.();
        unsubscribe = undefined;
        await d.close();
        return null;
    }
  };
  const reader = new LineReader((line) => {
    let req: SimRequest;
    try {
      req = decode(line) as SimRequest;
    } catch {
      socket.destroy();
      return;
    }
    handle(req).then(
      (value) => send({ id: req.id, ok: true, value }),
      (err: unknown) => send({ id: req.id, ok: false, error: toWireError(err, req.method) }),
    );
  });
  socket.on('data', (chunk: string) => {
    try {
      reader.push(chunk);
    } catch {
      socket.destroy();
    }
  });
  socket.on('close', () => {
    void unsubscribe?.();
    void driver?.close();
  });
  socket.on('error', () => undefined);
}
