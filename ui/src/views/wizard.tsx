// The VM create wizard: image → offering → networks → access (SSH key, user-data, security
// groups when the cloud has them) → review. Everything else of the create schema stays at its
// default; the full form is one click away.
import { useState } from 'preact/hooks';
import { go } from '../lib/hooks';
import { collections, kinds, state } from '../lib/live';
import { fieldsOf, toBody, type FormValues } from '../lib/schema';
import { SchemaForm } from './form';
import { submitCreate } from './create';

const STEPS: Array<{ title: string; fields: string[] }> = [
  { title: 'Name and image', fields: ['name', 'imageUuid'] },
  { title: 'Offering', fields: ['instanceOfferingUuid', 'cpuNum', 'memorySize'] },
  { title: 'Networks', fields: ['l3NetworkUuids', 'defaultL3NetworkUuid'] },
  { title: 'Access', fields: ['sshKey', 'userData', 'securityGroupUuids', 'consolePassword', 'hostname'] },
];

export function VmWizard() {
  const col = collections().find((c) => c.kind === 'vm-instance')!;
  const all = fieldsOf(state.doc!, { $ref: col.create!.schema }, kinds());
  const [step, setStep] = useState(0);
  const [values, setValues] = useState<FormValues>({});
  const [errors, setErrors] = useState<Record<string, string>>({});
  const [msg, setMsg] = useState<string | undefined>();
  const [busy, setBusy] = useState(false);
  const review = step === STEPS.length;
  const stepFields = review ? [] : all.filter((f) => STEPS[step]!.fields.includes(f.name));
  const wizardFields = all.filter((f) => STEPS.some((s) => s.fields.includes(f.name)));
  const stepOf = (field: string): number => STEPS.findIndex((s) => s.fields.includes(field));
  const next = (e: Event): void => {
    e.preventDefault();
    const { errors: local } = toBody(stepFields, values);
    setErrors(local);
    if (!Object.keys(local).length) setStep(step + 1);
  };
  const create = async (): Promise<void> => {
    const { body, errors: local } = toBody(wizardFields, values);
    if (Object.keys(local).length) {
      setErrors(local);
      setStep(Math.max(0, stepOf(Object.keys(local)[0]!)));
      return;
    }
    setBusy(true);
    const r = await submitCreate(col, all, body, `create VM ${String(body.name)}`);
    setBusy(false);
    if (r.errors) {
      setErrors(r.errors);
      setStep(Math.max(0, stepOf(Object.keys(r.errors)[0]!)));
    } else if (r.message) setMsg(r.message);
    else go('/c/vm-instances');
  };
  return (
    <section>
      <header class="bar">
        <h1>New VM</h1>
        <a href="#/c/vm-instances/new">full form</a>
      </header>
      <ol class="steps">
        {STEPS.map((s, i) => (
          <li key={s.title} class={i === step ? 'current' : ''} aria-current={i === step ? 'step' : undefined}>
            {s.title}
          </li>
        ))}
        <li class={review ? 'current' : ''}>Review</li>
      </ol>
      {!review && (
        <form onSubmit={next} noValidate>
          <h2>{STEPS[step]!.title}</h2>
          <SchemaForm fields={stepFields} values={values} setValues={setValues} errors={errors} idPrefix="vm" />
          <div class="buttons">
            <button type="button" disabled={step === 0} onClick={() => setStep(step - 1)}>
              Back
            </button>
            <button type="submit" class="primary">
              Next
            </button>
          </div>
        </form>
      )}
      {review && (
        <div>
          <h2>Review</h2>
          <table class="props">
            <tbody>
              {Object.entries(toBody(wizardFields, values).body).map(([k, v]) => (
                <tr key={k}>
                  <th>{k}</th>
                  <td class="mono">{k === 'consolePassword' ? '••••••' : typeof v === 'string' ? v : JSON.stringify(v)}</td>
                </tr>
              ))}
            </tbody>
          </table>
          {msg && <div class="error" role="alert">{msg}</div>}
          <div class="buttons">
            <button type="button" onClick={() => setStep(step - 1)}>
              Back
            </button>
            <button class="primary" disabled={busy} onClick={() => void create()}>
              Create VM
            </button>
          </div>
        </div>
      )}
    </section>
  );
}
