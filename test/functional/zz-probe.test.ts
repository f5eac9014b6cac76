import { useCleanup } from '../harness/cleanup.js';
import { startFakeCloud } from '../harness/fake-cloud.js';
import { testController } from '../harness/controller.js';
import { cloudModule } from '../../controller/cloud/install.js';
import { ApiRegistry } from '../../controller/api/registry.js';
describe('probe', function () {
  this.timeout(60000);
  const cleanup = useCleanup();
  it('times', async () => {
    let t = Date.now();
    const fc = await startFakeCloud(cleanup);
    console.log('start', Date.now() - t);
    for (let i = 0; i < 3; i++) {
      const old = fc.controller;
      t = Date.now(); await old.stop(); console.log('stop', Date.now() - t);
      t = Date.now();
      const next = await testController(cleanup, { registry: new ApiRegistry(), dataDir: old.dataDir, adminPassword: old.adminPassword, modules: [cloudModule({ hosts: false })] } as never);
      console.log('start', Date.now() - t);
      t = Date.now(); const api = await next.login('admin', next.adminPassword); console.log('login', Date.now() - t);
      Object.assign(fc, { controller: next, api });
    }
  });
});
