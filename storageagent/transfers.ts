// Running transfers (image downloads, image-cache pulls), cancellable by image uuid or task id.
export interface Transfer {
  imageUuid: string;
  taskId: string;
  signal: AbortSignal;
  done(): void;
}

export class Transfers {
  private running = new Map<symbol, { imageUuid: string; taskId: string; ac: AbortController }>();

  start(imageUuid: string, taskId: string, parent: AbortSignal): Transfer {
    const ac = new AbortController();
    const key = Symbol(imageUuid);
    const onParent = (): void => ac.abort();
    if (parent.aborted) ac.abort();
    else parent.addEventListener('abort', onParent, { once: true });
    this.running.set(key, { imageUuid: imageUuid.toLowerCase(), taskId, ac });
    return {
      imageUuid,
      taskId,
      signal: ac.signal,
      done: () => {
        parent.removeEventListener('abort', onParent);
        this.running.delete(key);
      },
    };
  }

  cancel(by: { imageUuid?: string; taskId?: string }): number {
    let n = 0;
    for (const t of this.running.values()) {
      if ((by.imageUuid && t.imageUuid === by.imageUuid.toLowerCase()) || (by.taskId && t.taskId === by.taskId)) {
        t.ac.abort();
        n++;
      }
    }
    return n;
  }

  get size(): number {
    return this.running.size;
  }
}
