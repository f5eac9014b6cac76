// One table maps every error code to its HTTP status and its kind (what a caller may do next).
import assert from 'node:assert/strict';
import { ERROR_TABLE, ErrorCodes, TStackError, errorInfo, httpStatusOf } from '../../../shared/errors.js';

describe('error codes: one table of status and kind', () => {
  it('every declared code has a row', () => {
    for (const c of ErrorCodes) assert.ok(Object.hasOwn(ERROR_TABLE, c), `${c} is missing from ERROR_TABLE`);
  });

  it('maps codes to statuses and kinds; unknown codes are 500 permanent', () => {
    const cases: Array<[string, number, string]> = [
      ['INVALID_ARGUMENT', 400, 'permanent'],
      ['UNAUTHORIZED', 401, 'permanent'],
      ['FORBIDDEN', 403, 'permanent'],
      ['NOT_FOUND', 404, 'not-found'],
      ['VM_NOT_FOUND', 404, 'not-found'],
      ['METHOD_NOT_ALLOWED', 405, 'permanent'],
      ['CONFLICT', 409, 'conflict'],
      ['CAPACITY_EXCEEDED', 409, 'conflict'],
      ['INTERNAL', 500, 'permanent'],
      ['AGENT_UNREACHABLE', 503, 'retryable'],
      ['TASK_LOST', 503, 'retryable'],
      ['TIMEOUT', 504, 'retryable'],
      ['SOMETHING_NEW', 500, 'permanent'],
      ['toString', 500, 'permanent'],
    ];
    for (const [code, status, kind] of cases) {
      assert.deepEqual(errorInfo(code), { status, kind }, code);
      assert.equal(httpStatusOf(code), status, code);
      assert.equal(new TStackError(code, 'x').kind, kind, code);
    }
  });

  it('4xx codes are never retryable and 5xx never not-found', () => {
    for (const [code, { status, kind }] of Object.entries(ERROR_TABLE)) {
      if (status < 500) assert.notEqual(kind, 'retryable', code);
      else assert.notEqual(kind, 'not-found', code);
    }
  });
});
