// What every storage-agent module shares: the data dir, running transfers, registered stores.
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import type { AgentServer } from '../shared/agent/server.js';
import { Transfers } from './transfers.js';

export interface StorageAgentOptions {
  /** agent data dir: temp files, the registry of image stores */
  dataDir: string;
}

export interface AgentContext {
  server: AgentServer;
  dataDir: string;
  transfers: Transfers;
  /** a fresh temp file path under <dataDir>/tmp */
  tmpFile(label: string): Promise<string>;
}

export function makeContext(server: AgentServer, o: StorageAgentOptions): AgentContext {
  return {
    server,
    dataDir: o.dataDir,
    transfers: new Transfers(),
    async tmpFile(label: string) {
      const d = join(o.dataDir, 'tmp');
      await mkdir(d, { recursive: true });
      return join(d, `${label.replace(/[^A-Za-z0-9_.-]/g, '_')}.${randomBytes(4).toString('hex')}.tmp`);
    },
  };
}
