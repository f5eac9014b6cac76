// Create any kind from its create schema; field errors from the API land at their field.
import { useState } from 'preact/hooks';
import { ApiError, isJob, post } from '../lib/api';
import { go } from '../lib/hooks';
import { kinds, state, toast, trackJob } from '../lib/live';
import { fieldsOf, formFieldOf, toBody, type Field, type FormValues } from '../lib/schema';
import type { CliCollection, Resource } from '../lib/types';
import { SchemaForm } from './form';

/** POST a body; a job goes to a toast; an API error is {field → message} or a message. */
export async function submitCreate(col: CliCollection, fields: Field[], body: Record<string, unknown>, title: string): Promise<{ errors?: Record<string, string>; message?: string; uuid?: string }> {
  try {
    const res = await post<Resource | { jobUuid: string; location: string }>(`/v1/${col.collection}`, body);
    if (isJob(res)) {
      trackJob(res.jobUuid, title);
      return {};
    }
    toast('info', `${title}: done`);
    return { uuid: (res as Resource).uuid };
  } catch (e) {
    const f = e instanceof ApiError ? formFieldOf(e.field, fields) : undefined;
    return f ? { errors: { [f]: (e as Error).message } } : { message: (e as Error).message };
  }
}

export function CreateView({ col }: { col: CliCollection }) {
  const fields = fieldsOf(state.doc!, { $ref: col.create!.schema }, kinds());
  const [values, setValues] = useState<FormValues>({});
  const [errors, setErrors] = useState<Record<string, string>>({});
  const [msg, setMsg] = useState<string | undefined>();
  const [busy, setBusy] = useState(false);
  const submit = async (e: Event): Promise<void> => {
    e.preventDefault();
    const { body, errors: local } = toBody(fields, values);
    setErrors(local);
    setMsg(undefined);
    if (Object.keys(local).length) return;
    setBusy(true);
    const r = await submitCreate(col, fields, body, `create ${col.kind} ${String(body.name ?? '')}`);
    setBusy(false);
    if (r.errors) setErrors(r.errors);
    else if (r.message) setMsg(r.message);
    else go(r.uuid ? `/c/${col.collection}/${r.uuid}` : `/c/${col.collection}`);
  };
  return (
    <section>
      <header class="bar">
        <h1>New {col.kind}</h1>
        <a href={`#/c/${col.collection}`}>← {col.collection}</a>
      </header>
      <form onSubmit={(e) => void submit(e)} noValidate>
        <SchemaForm fields={fields} values={values} setValues={setValues} errors={errors} idPrefix="create" />
        {msg && <div class="error" role="alert">{msg}</div>}
        <div class="buttons">
          <button type="submit" class="primary" disabled={busy}>
            Create
          </button>
        </div>
      </form>
    </section>
  );
}
