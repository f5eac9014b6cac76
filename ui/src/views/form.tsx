// A form generated from a JSON schema: one labelled input per field, refs as selects of the
// referenced kind's resources, the API's field errors shown under their field.
import { useEffect, useState } from 'preact/hooks';
import { get, type List } from '../lib/api';
import { collectionOfKind } from '../lib/live';
import type { Field, FormValues } from '../lib/schema';
import type { Resource } from '../lib/types';

export function RefOptions({ kind, multiple, value, onInput, id }: { kind: string; multiple: boolean; value: string | string[] | undefined; onInput: (v: string | string[]) => void; id: string }) {
  const [items, setItems] = useState<Resource[]>([]);
  useEffect(() => {
    const col = collectionOfKind(kind);
    if (col) void get<List>(`/v1/${col}?limit=500&sort=%2Bname&fields=uuid,name,state,status`).then((r) => setItems(r.inventories), () => undefined);
  }, [kind]);
  if (multiple) {
    const sel = Array.isArray(value) ? value : [];
    return (
      <div class="checks" id={id} role="group" aria-labelledby={`${id}-label`}>
        {items.length === 0 && <span class="muted">none yet</span>}
        {items.map((r) => (
          <label key={r.uuid} class="check">
            <input type="checkbox" checked={sel.includes(r.uuid)} onChange={(e) => onInput((e.target as HTMLInputElement).checked ? [...sel, r.uuid] : sel.filter((u) => u !== r.uuid))} />
            {r.name || r.uuid} <span class="muted">{String(r.state ?? r.status ?? '')}</span>
          </label>
        ))}
      </div>
    );
  }
  return (
    <select id={id} value={typeof value === 'string' ? value : ''} onChange={(e) => onInput((e.target as HTMLSelectElement).value)}>
      <option value="">—</option>
      {items.map((r) => (
        <option key={r.uuid} value={r.uuid}>
          {r.name || r.uuid}
        </option>
      ))}
    </select>
  );
}

export function FieldInput({ f, value, set, idPrefix }: { f: Field; value: FormValues[string]; set: (v: FormValues[string]) => void; idPrefix: string }) {
  const id = `${idPrefix}-${f.name}`;
  const str = typeof value === 'string' ? value : '';
  switch (f.input) {
    case 'boolean':
      return <input id={id} type="checkbox" checked={value === true} onChange={(e) => set((e.target as HTMLInputElement).checked)} />;
    case 'enum':
      return (
        <select id={id} value={str} onChange={(e) => set((e.target as HTMLSelectElement).value)}>
          <option value="">—</option>
          {f.options!.map((o) => (
            <option key={o} value={o}>
              {o}
            </option>
          ))}
        </select>
      );
    case 'ref':
    case 'refs':
      return <RefOptions id={id} kind={f.refKind!} multiple={f.input === 'refs'} value={value as string | string[] | undefined} onInput={set} />;
    case 'textarea':
    case 'json':
    case 'list':
      return <textarea id={id} rows={f.input === 'textarea' ? 4 : 2} value={str} onInput={(e) => set((e.target as HTMLTextAreaElement).value)} placeholder={f.input === 'json' ? 'JSON' : f.input === 'list' ? 'one per line' : ''} />;
    case 'password':
      return <input id={id} type="password" value={str} onInput={(e) => set((e.target as HTMLInputElement).value)} autoComplete="new-password" />;
    default:
      return <input id={id} type="text" inputMode={f.input === 'integer' || f.input === 'number' ? 'numeric' : 'text'} value={str} onInput={(e) => set((e.target as HTMLInputElement).value)} autoComplete="off" />;
  }
}

export function SchemaForm({ fields, values, setValues, errors, idPrefix }: { fields: Field[]; values: FormValues; setValues: (v: FormValues) => void; errors: Record<string, string>; idPrefix: string }) {
  return (
    <div class="form">
      {fields.map((f) => (
        <div key={f.name} class={`field${errors[f.name] ? ' invalid' : ''}`} data-field={f.name}>
          <label for={`${idPrefix}-${f.name}`} id={`${idPrefix}-${f.name}-label`}>
            {f.label}
            {f.required && <span aria-label="required"> *</span>}
          </label>
          <FieldInput f={f} value={values[f.name]} set={(v) => setValues({ ...values, [f.name]: v })} idPrefix={idPrefix} />
          {f.description && <small class="muted">{f.description}</small>}
          {errors[f.name] && (
            <div class="error" role="alert" data-error-for={f.name}>
              {errors[f.name]}
            </div>
          )}
        </div>
      ))}
    </div>
  );
}
