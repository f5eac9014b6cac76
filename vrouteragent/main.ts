#!/usr/bin/env node
// tstack-vrouteragent: network-function agent: DHCP, DNS, metadata in namespaces.
import { startAgent } from '../shared/agent/main-helper.js';

startAgent({ name: 'tstack-vrouteragent', port: 7272, description: 'network-function agent: DHCP, DNS, metadata in namespaces' }, async () => {
  // command handlers are registered here
});
