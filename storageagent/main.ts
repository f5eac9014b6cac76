#!/usr/bin/env node
// tstack-storageagent: storage agent: image store and primary storage.
import { startAgent } from '../shared/agent/main-helper.js';

startAgent({ name: 'tstack-storageagent', port: 7171, description: 'storage agent: image store and primary storage' }, async () => {
  // command handlers are registered here
});
