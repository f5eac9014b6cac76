#!/usr/bin/env node
// tstack-kvmagent: per-host VM agent: libvirt/QEMU, bridges, host facts.
import { startAgent } from '../shared/agent/main-helper.js';

startAgent({ name: 'tstack-kvmagent', port: 7070, description: 'per-host VM agent: libvirt/QEMU, bridges, host facts' }, async () => {
  // command handlers are registered here
});
