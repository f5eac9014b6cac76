// What one controller keeps in memory about its host operations. It lives in the controller's
// context (controller/context.ts), so two controllers in one process never share it.
import { SerialQueues } from '../../shared/agent/serial-queue.js';
import type { BuiltPackage } from './package.js';
import { HostKnowledge } from './known.js';

export interface HostRuntime {
  /** One operation at a time per host. */
  queues: SerialQueues;
  /** Hosts with an operation in progress (the tracker skips them). */
  busy: Set<string>;
  /** Hosts whose agents got an event token from this controller (tokens live in memory). */
  bound: Set<string>;
  /** Agent packages being built or built, by tree and install mode. */
  pkgs: Map<string, Promise<BuiltPackage>>;
  /** What each host is known to have (bridges, cached images): requests a VM create can skip. */
  known: HostKnowledge;
}

/** `knownMaxAgeMs`: how long a learned fact is used at most (default 60 s; 0 = never used). */
export const newHostRuntime = (knownMaxAgeMs?: number): HostRuntime => ({ queues: new SerialQueues(), busy: new Set(), bound: new Set(), pkgs: new Map(), known: new HostKnowledge(knownMaxAgeMs) });

/** Moves the VMs off a host entering maintenance (installed by the cloud module: migrate or stop them). */
export type Evacuator = (hostUuid: string) => Promise<void>;
