// What the controller asks of the simulated hosts, counted where it lands (the scale bench's
// "no storm" figures): requests per route, requests per wall-clock second, requests in
// progress at once (peak), and per host the time of its last successful `connect` (a
// controller binding the host: its reconnect after a controller restart) and the first route it
// was asked in the window (a restarted controller connects without pinging first). reset() starts a
// new measurement window (the peak and the counts; the connect times are kept per window too).

export interface TrafficReport {
  /** Window start (ms since the epoch, this machine's clock). */
  since: number;
  requests: number;
  byRoute: Record<string, number>;
  /** Requests started in each second of the window: [second since the epoch, count]. */
  perSecond: Array<[number, number]>;
  inFlight: number;
  peakInFlight: number;
  /** Per host index: ms since the epoch of its last connect answered 200 in this window. */
  connectedAt: Record<number, number>;
  /** Per host index: the route of its first request in this window. */
  firstRoute: Record<number, string>;
  /** Per host index: its requests in this window by route (which hosts were pinged). */
  hostRoutes: Record<number, Record<string, number>>;
}

export class Traffic {
  private since = Date.now();
  private requests = 0;
  private byRoute = new Map<string, number>();
  private perSecond = new Map<number, number>();
  private inFlight = 0;
  private peak = 0;
  private connectedAt = new Map<number, number>();
  private firstRoute = new Map<number, string>();
  private hostRoutes = new Map<number, Map<string, number>>();

  /** The AgentServer `observe` hook of host `index`. */
  observer(index: number): (route: string) => (status: number) => void {
    return (route) => {
      const now = Date.now();
      this.requests++;
      this.byRoute.set(route, (this.byRoute.get(route) ?? 0) + 1);
      if (!this.firstRoute.has(index)) this.firstRoute.set(index, route);
      let mine = this.hostRoutes.get(index);
      if (!mine) this.hostRoutes.set(index, (mine = new Map()));
      mine.set(route, (mine.get(route) ?? 0) + 1);
      const sec = Math.floor(now / 1000);
      this.perSecond.set(sec, (this.perSecond.get(sec) ?? 0) + 1);
      // a day of seconds at most: the map never grows without bound
      if (this.perSecond.size > 86_400) this.perSecond.delete(this.perSecond.keys().next().value!);
      this.peak = Math.max(this.peak, ++this.inFlight);
      return (status) => {
        this.inFlight--;
        if (route === '/connect' && status === 200) this.connectedAt.set(index, Date.now());
      };
    };
  }

  reset(): void {
    this.since = Date.now();
    this.requests = 0;
    this.byRoute.clear();
    this.perSecond.clear();
    this.peak = this.inFlight;
    this.connectedAt.clear();
    this.firstRoute.clear();
    this.hostRoutes.clear();
  }

  report(): TrafficReport {
    return {
      since: this.since,
      requests: this.requests,
      byRoute: Object.fromEntries(this.byRoute),
      perSecond: [...this.perSecond].sort((a, b) => a[0] - b[0]),
      inFlight: this.inFlight,
      peakInFlight: this.peak,
      connectedAt: Object.fromEntries(this.connectedAt),
      firstRoute: Object.fromEntries(this.firstRoute),
      hostRoutes: Object.fromEntries([...this.hostRoutes].map(([i, m]) => [i, Object.fromEntries(m)])),
    };
  }
}
