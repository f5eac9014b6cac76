// Allocators: IP addresses, hosts (CPU/memory with over-commit), primary storage (capacity).
export * from './ip.js';
export * from './host.js';
export * from './primary-storage.js';
export * from './mac.js';
export { capacityNamespace, reserved, reserve, unreserve } from './capacity.js';
