// One resource: its fields, its actions as buttons (forms from the action's schema, a
// confirmation for destructive ones), delete with the cascade dialog.
import { useState } from 'preact/hooks';
import { ApiError, del, get, isJob, post, put } from '../lib/api';
import { go, useData } from '../lib/hooks';
import { collectionOfKind, kinds, state, toast, trackJob } from '../lib/live';
import { fieldsOf, formFieldOf, isDestructive, toBody, type Field, type FormValues } from '../lib/schema';
import type { CliCollection, Dependent, Resource } from '../lib/types';
import { MetricChart } from './chart';
import { Dialog } from './dialog';
import { SchemaForm } from './form';
import { cell } from './list';

const refLink = (k: string, v: unknown): preact.ComponentChildren => {
  const m = /^(.+?)Uuids?$/.exec(k);
  const col = m ? collectionOfKind(m[1]!.replace(/([a-z0-9])([A-Z])/g, '$1-$2').toLowerCase()) : undefined;
  if (col && typeof v === 'string') return <a href={`#/c/${col}/${v}`}>{v}</a>;
  return <span class="mono">{cell(v)}</span>;
};

function ActionDialog({ col, r, action, onClose }: { col: CliCollection; r: Resource; action: CliCollection['actions'][number]; onClose: () => void }) {
  const fields: Field[] = fieldsOf(state.doc!, { $ref: action.schema }, kinds());
  const [values, setValues] = useState<FormValues>({});
  const [errors, setErrors] = useState<Record<string, string>>({});
  const [msg, setMsg] = useState<string | undefined>();
  const [busy, setBusy] = useState(false);
  const submit = async (e: Event): Promise<void> => {
    e.preventDefault();
    const { body, errors: local } = toBody(fields, values);
    setErrors(local);
    if (Object.keys(local).length) return;
    setBusy(true);
    try {
      const res = await post(`/v1/${col.collection}/${r.uuid}/actions`, { [action.name]: body });
      if (isJob(res)) trackJob(res.jobUuid, `${action.name} ${r.name}`);
      else if (action.name !== 'requestConsoleAccess') toast('info', `${action.name} ${r.name}: done`);
      onClose();
    } catch (err) {
      const f = err instanceof ApiError ? formFieldOf(err.field, fields, action.name) : undefined;
      if (f) setErrors({ [f]: (err as Error).message });
      else setMsg((err as Error).message);
    } finally {
      setBusy(false);
    }
  };
  return (
    <Dialog title={`${action.name}: ${r.name}`} onClose={onClose}>
      <form onSubmit={(e) => void submit(e)}>
        {action.description && <p class="muted">{action.description}</p>}
        {isDestructive(action.name) && <p class="warn">This changes the running state of {r.name}. Continue?</p>}
        <SchemaForm fields={fields} values={values} setValues={setValues} errors={errors} idPrefix={`act-${action.name}`} />
        {msg && <div class="error" role="alert">{msg}</div>}
        <div class="buttons">
          <button type="button" onClick={onClose}>
            Cancel
          </button>
          <button type="submit" class={isDestructive(action.name) ? 'danger' : 'primary'} disabled={busy} data-confirm={action.name}>
            {action.name}
          </button>
        </div>
      </form>
    </Dialog>
  );
}

/** Edit the fields the kind's update schema allows, prefilled from the resource. */
function EditDialog({ col, r, onClose }: { col: CliCollection; r: Resource; onClose: () => void }) {
  const fields: Field[] = fieldsOf(state.doc!, { $ref: col.update.schema }, kinds());
  const initial: FormValues = {};
  for (const f of fields) {
    const v = r[f.name];
    if (v === undefined) continue;
    initial[f.name] = f.input === 'boolean' ? v === true : f.input === 'refs' && Array.isArray(v) ? v.map(String) : f.input === 'json' ? JSON.stringify(v) : f.input === 'list' && Array.isArray(v) ? v.join('\n') : String(v);
  }
  const [values, setValues] = useState<FormValues>(initial);
  const [errors, setErrors] = useState<Record<string, string>>({});
  const [msg, setMsg] = useState<string | undefined>();
  const submit = async (e: Event): Promise<void> => {
    e.preventDefault();
    const { body, errors: local } = toBody(fields, values);
    setErrors(local);
    if (Object.keys(local).length) return;
    try {
      const res = await put(`/v1/${col.collection}/${r.uuid}`, body);
      if (isJob(res)) trackJob(res.jobUuid, `update ${r.name}`);
      else toast('info', `${col.kind} ${r.name} updated`);
      onClose();
    } catch (err) {
      const f = err instanceof ApiError ? formFieldOf(err.field, fields) : undefined;
      if (f) setErrors({ [f]: (err as Error).message });
      else setMsg((err as Error).message);
    }
  };
  return (
    <Dialog title={`Edit ${r.name}`} onClose={onClose}>
      <form onSubmit={(e) => void submit(e)} noValidate>
        <SchemaForm fields={fields} values={values} setValues={setValues} errors={errors} idPrefix="edit" />
        {msg && <div class="error" role="alert">{msg}</div>}
        <div class="buttons">
          <button type="button" onClick={onClose}>
            Cancel
          </button>
          <button type="submit" class="primary">
            Save
          </button>
        </div>
      </form>
    </Dialog>
  );
}

export function DeleteDialog({ col, r, onClose }: { col: CliCollection; r: Resource; onClose: () => void }) {
  const [deps, setDeps] = useState<Dependent[] | undefined>();
  const [msg, setMsg] = useState<string | undefined>();
  const [busy, setBusy] = useState(false);
  const run = async (cascade: boolean): Promise<void> => {
    setBusy(true);
    try {
      const res = await del(`/v1/${col.collection}/${r.uuid}${cascade ? '?cascade=true' : ''}`);
      if (isJob(res)) trackJob(res.jobUuid, `delete ${r.name}`);
      else toast('info', `${col.kind} ${r.name} deleted`);
      onClose();
      go(`/c/${col.collection}`);
    } catch (e) {
      if (e instanceof ApiError && e.status === 409 && Array.isArray(e.details?.dependents)) setDeps(e.details.dependents as Dependent[]);
      setMsg((e as Error).message);
    } finally {
      setBusy(false);
    }
  };
  const cascadable = deps !== undefined && deps.length > 0 && deps.every((d) => /cascade/.test(d.reason));
  return (
    <Dialog title={`Delete ${col.kind} ${r.name}`} onClose={onClose}>
      {!deps && <p>Delete {r.name}?</p>}
      {deps && (
        <div class="cascade" data-testid="cascade">
          <p>These depend on it:</p>
          <ul>
            {deps.map((d) => (
              <li key={d.uuid}>
                <strong>{d.kind}</strong> {d.name || d.uuid} {d.state && <span class="badge">{d.state}</span>} — <span class="muted">{d.reason}</span>
              </li>
            ))}
          </ul>
          {cascadable ? <p class="warn">Delete with cascade removes all of the above too.</p> : <p class="warn">Some of these must be removed first.</p>}
        </div>
      )}
      {msg && !deps && <div class="error" role="alert">{msg}</div>}
      <div class="buttons">
        <button type="button" onClick={onClose}>
          Cancel
        </button>
        {!deps && (
          <button class="danger" disabled={busy} onClick={() => void run(false)}>
            Delete
          </button>
        )}
        {cascadable && (
          <button class="danger" disabled={busy} onClick={() => void run(true)}>
            Delete with cascade
          </button>
        )}
      </div>
    </Dialog>
  );
}

export function DetailView({ col, uuid }: { col: CliCollection; uuid: string }) {
  const { data: r, error } = useData(() => get<Resource>(`/v1/${col.collection}/${uuid}`), [col.collection, uuid], [col.kind]);
  const [action, setAction] = useState<CliCollection['actions'][number] | undefined>();
  const [deleting, setDeleting] = useState(false);
  const [editing, setEditing] = useState(false);
  if (error) return <div class="error" role="alert">{error}</div>;
  if (!r) return <p class="muted">loading…</p>;
  const hasFields = (a: CliCollection['actions'][number]): boolean => fieldsOf(state.doc!, { $ref: a.schema }, kinds()).length > 0;
  const runAction = async (a: CliCollection['actions'][number]): Promise<void> => {
    if (a.name === 'requestConsoleAccess') return go(`/console/${r.uuid}`);
    if (hasFields(a) || isDestructive(a.name)) return setAction(a);
    try {
      const res = await post(`/v1/${col.collection}/${r.uuid}/actions`, { [a.name]: {} });
      if (isJob(res)) trackJob(res.jobUuid, `${a.name} ${r.name}`);
      else toast('info', `${a.name} ${r.name}: done`);
    } catch (e) {
      toast('error', `${a.name} ${r.name}: ${(e as Error).message}`);
    }
  };
  const st = r.state ?? r.status;
  return (
    <section>
      <header class="bar">
        <h1>
          {r.name || r.uuid} {st !== undefined && <span class={`badge s-${cell(st)}`} data-testid="state">{cell(st)}</span>}
        </h1>
        <a href={`#/c/${col.collection}`}>← {col.collection}</a>
      </header>
      <div class="actions" role="toolbar" aria-label="actions">
        {col.kind === 'vm-instance' && (
          <a class="button" href={`#/console/${r.uuid}`}>
            Console
          </a>
        )}
        {col.actions
          .filter((a) => a.name !== 'requestConsoleAccess')
          .map((a) => (
            <button key={a.name} class={isDestructive(a.name) ? 'danger-outline' : ''} onClick={() => void runAction(a)} title={a.description}>
              {a.name}
            </button>
          ))}
        {fieldsOf(state.doc!, { $ref: col.update.schema }, kinds()).length > 0 && <button onClick={() => setEditing(true)}>Edit</button>}
        {col.delete && (
          <button class="danger" onClick={() => setDeleting(true)}>
            Delete
          </button>
        )}
      </div>
      <table class="props">
        <tbody>
          {Object.entries(r).map(([k, v]) => (
            <tr key={k} data-prop={k}>
              <th>{k}</th>
              <td>{k === 'vmNics' && Array.isArray(v) ? v.map((n: { ip?: string; mac?: string }) => <div class="mono">{`${n.ip ?? ''} ${n.mac ?? ''}`}</div>) : refLink(k, v)}</td>
            </tr>
          ))}
        </tbody>
      </table>
      {col.kind === 'vm-instance' && (
        <>
          <h2>Metrics</h2>
          <div class="charts">
            <MetricChart title="CPU" namespace="ZStack/VM" metricName="CPUAverageUsedUtilization" by="VMUuid" labels={`VMUuid=${r.uuid}`} unit="%" names={{ [r.uuid]: r.name }} />
            <MetricChart title="Memory used" namespace="ZStack/VM" metricName="MemoryUsedInPercent" by="VMUuid" labels={`VMUuid=${r.uuid}`} unit="%" names={{ [r.uuid]: r.name }} />
          </div>
        </>
      )}
      {action && <ActionDialog col={col} r={r} action={action} onClose={() => setAction(undefined)} />}
      {deleting && <DeleteDialog col={col} r={r} onClose={() => setDeleting(false)} />}
      {editing && <EditDialog col={col} r={r} onClose={() => setEditing(false)} />}
    </section>
  );
}
