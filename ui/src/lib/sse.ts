// Live updates: /v1/events read with fetch (an EventSource cannot send the Authorization
// header), parsed here, reconnecting with Last-Event-ID so nothing is missed.
export interface SseMessage {
  event: string;
  data: string;
  id?: string;
}

/** An incremental text/event-stream parser: feed it chunks, it returns complete messages. */
export class SseParser {
  private buf = '';
  private event = '';
  private data: string[] = [];
  private id: string | undefined;

  push(chunk: string): SseMessage[] {
    this.buf += chunk;
    const out: SseMessage[] = [];
    let nl: number;
    while ((nl = this.buf.search(/\r\n|\n|\r/)) >= 0) {
      const line = this.buf.slice(0, nl);
      this.buf = this.buf.slice(nl + (this.buf.startsWith('\r\n', nl) ? 2 : 1));
      if (line === '') {
        if (this.data.length) {
          const m: SseMessage = { event: this.event || 'message', data: this.data.join('\n') };
          if (this.id !== undefined) m.id = this.id;
          out.push(m);
        }
        this.event = '';
        this.data = [];
        continue;
      }
      if (line.startsWith(':')) continue;
      const c = line.indexOf(':');
      const name = c < 0 ? line : line.slice(0, c);
      const value = c < 0 ? '' : line.slice(c + 1).replace(/^ /, '');
      if (name === 'event') this.event = value;
      else if (name === 'data') this.data.push(value);
      else if (name === 'id') this.id = value;
    }
    return out;
  }
}

export interface EventStream {
  close(): void;
}

/** Stream events until closed; `onStatus` says whether the stream is up. A 401 ends it. */
export function openEvents(token: () => string | undefined, onMessage: (m: SseMessage) => void, onStatus: (up: boolean) => void, onUnauthorized: () => void): EventStream {
  let closed = false;
  let ctrl: AbortController | undefined;
  let lastId: string | undefined;
  const loop = async (): Promise<void> => {
    while (!closed) {
      const t = token();
      if (!t) return;
      ctrl = new AbortController();
      try {
        const headers: Record<string, string> = { authorization: `Bearer ${t}`, accept: 'text/event-stream' };
        if (lastId) headers['last-event-id'] = lastId;
        const res = await fetch('/v1/events', { headers, signal: ctrl.signal });
        if (res.status === 401) {
          onUnauthorized();
          return;
        }
        if (!res.ok || !res.body) throw new Error(`HTTP ${res.status}`);
        onStatus(true);
        const parser = new SseParser();
        const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          for (const m of parser.push(value)) {
            if (m.id) lastId = m.id;
            onMessage(m);
          }
        }
      } catch {
        /* dropped: retry below */
      }
      if (closed) return;
      onStatus(false);
      await new Promise((r) => setTimeout(r, 2000));
    }
  };
  void loop();
  return {
    close() {
      closed = true;
      ctrl?.abort();
    },
  };
}
