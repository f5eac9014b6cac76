export * from './flow.js';
export * from './queues.js';
export * from './engine.js';
export * from './recover.js';
export * from './lease.js';
