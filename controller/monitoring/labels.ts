// Label conditions of alarms and event subscriptions: [{key, op: Equal|NotEqual|Regex, value}],
// all must hold. A Regex must match the whole value (as PromQL's =~ does).

export interface LabelCondition {
  key: string;
  op?: 'Equal' | 'NotEqual' | 'Regex';
  value: string;
}

export function labelsMatch(conds: readonly LabelCondition[] | undefined, labels: Readonly<Record<string, string | undefined>>): boolean {
  for (const c of conds ?? []) {
    const v = labels[c.key];
    switch (c.op ?? 'Equal') {
      case 'Equal':
        if (v !== c.value) return false;
        break;
      case 'NotEqual':
        if (v === c.value) return false;
        break;
      case 'Regex':
        if (v === undefined || !new RegExp(`^(?:${c.value})$`).test(v)) return false;
        break;
    }
  }
  return true;
}
