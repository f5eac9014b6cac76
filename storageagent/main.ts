#!/usr/bin/env node
// tstack-storageagent: image store (backup storage) and primary storage (local, shared mount
// point, NFS, Ceph RBD). `registerStorageAgent` wires every command into an AgentServer, so
// tests can run the agent in-process; running this file starts the daemon.
import { fileURLToPath } from 'node:url';
import { realpathSync } from 'node:fs';
import { startAgent } from '../shared/agent/main-helper.js';
import type { AgentServer } from '../shared/agent/server.js';
import { makeContext, type AgentContext, type StorageAgentOptions } from './context.js';
import { registerImageStore } from './imagestore/index.js';
import { registerPrimaryStorage } from './primary/index.js';
import { registerHa } from './ha.js';
import { registerVolumeTransfer } from './primary/volume-transfer.js';

export const CAPABILITIES = ['imagestore', 'imagestore.ceph', 'ps.local', 'ps.sharedmountpoint', 'ps.nfs', 'ps.ceph', 'download.http', 'download.ftp', 'download.sftp', 'download.file', 'ha.heartbeat', 'ps.volume-transfer'];

export function registerStorageAgent(server: AgentServer, opts: StorageAgentOptions): AgentContext {
  const ctx = makeContext(server, opts);
  registerImageStore(ctx);
  registerPrimaryStorage(ctx);
  registerHa(ctx);
  registerVolumeTransfer(ctx);
  return ctx;
}

const isMain = (): boolean => {
  try {
    return !!process.argv[1] && realpathSync(process.argv[1]) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
};

if (isMain()) {
  startAgent(
    { name: 'tstack-storageagent', port: 7171, description: 'storage agent: image store and primary storage' },
    async (server, cfg) => {
      registerStorageAgent(server, { dataDir: cfg.dataDir });
    },
    { capabilities: CAPABILITIES },
  );
}
