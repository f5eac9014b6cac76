// file:/// source: a file on the image-store host itself.
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { FatalDownloadError, type Opened, type Source } from './types.js';

export class FileSource implements Source {
  readonly display: string;
  private readonly path: string;
  constructor(url: URL) {
    this.path = fileURLToPath(url);
    this.display = url.href;
  }

  async open(offset: number, signal: AbortSignal): Promise<Opened> {
    const st = await stat(this.path).catch((e: NodeJS.ErrnoException) => {
      throw new FatalDownloadError(`${this.display}: ${e.code === 'ENOENT' ? 'no such file' : e.message}`);
    });
    if (!st.isFile()) throw new FatalDownloadError(`${this.display}: not a regular file`);
    const stream = createReadStream(this.path, { start: offset, highWaterMark: 1 << 20, signal });
    return { stream, total: st.size, offset, close: () => stream.destroy() };
  }
}
