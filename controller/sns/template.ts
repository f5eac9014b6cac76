// Message templates with the manual's variables: `${ALARM_NAME}`, `${ALARM_CURRENT_STATUS}`,
// `${ALARM_CURRENT_VALUE}`… An unknown variable stays as written (a typo shows in the message
// instead of vanishing).

export type TemplateVars = Record<string, string | number | boolean | undefined>;

export function renderTemplate(template: string, vars: TemplateVars): string {
  return template.replace(/\$\{([A-Z][A-Z0-9_]*)\}/g, (whole, name: string) => {
    const v = vars[name];
    return v === undefined ? whole : String(v);
  });
}

export const DEFAULT_ALARM_TEMPLATE =
  'Alarm ${ALARM_NAME} is ${ALARM_CURRENT_STATUS} (was ${ALARM_PREVIOUS_STATUS}): ${ALARM_NAMESPACE} ${ALARM_METRIC} ${ALARM_LABELS} = ${ALARM_CURRENT_VALUE}, condition ${ALARM_COMPARISON_OPERATOR} ${ALARM_THRESHOLD} for ${ALARM_PERIOD}s (alarm ${ALARM_UUID}, ${ALARM_TIME})';

export const DEFAULT_EVENT_TEMPLATE = '${EVENT_NAME}: ${RESOURCE_TYPE} ${RESOURCE_NAME} (${RESOURCE_UUID}) ${EVENT_DETAIL} (subscription ${SUBSCRIPTION_NAME}, ${EVENT_TIME})';
