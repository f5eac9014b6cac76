// The keep-alive HTTP transport lives in shared/http (agents POST their callbacks with it too).
export * from '../../shared/http/transport.js';
