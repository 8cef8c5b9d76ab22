// Helpers of the tests: what Grafana hands the data source.
import { DataSourceInstanceSettings, PluginType } from '@grafana/data';
import { BackendSrv, BackendSrvRequest } from '@grafana/runtime';
import { of, throwError } from 'rxjs';

import { AiopsOptions } from './types';

/** instanceSettings are the settings Grafana hands a data source instance, for the tests. */
export function instanceSettings(overrides: Partial<DataSourceInstanceSettings<AiopsOptions>> = {}): DataSourceInstanceSettings<AiopsOptions> {
  return {
    id: 1,
    uid: 'aiops-uid',
    type: 'aiops-aiops-datasource',
    name: 'aiops',
    access: 'proxy',
    readOnly: false,
    jsonData: {},
    meta: {
      id: 'aiops-aiops-datasource',
      name: 'aiops',
      type: PluginType.datasource,
      module: 'public/plugins/aiops-aiops-datasource/module.js',
      baseUrl: 'public/plugins/aiops-aiops-datasource',
      info: {
        author: { name: 'aiops' },
        description: '',
        links: [],
        logos: { small: '', large: '' },
        screenshots: [],
        updated: '',
        version: '',
      },
    },
    ...overrides,
  };
}

// Grafana's server, as far as the data source sees it: what it was asked,
// and the answers the test sets.
export class FakeBackend {
  requests: BackendSrvRequest[] = [];
  answers: Record<string, unknown> = {};

  srv(): BackendSrv {
    return {
      fetch: (req: BackendSrvRequest) => {
        this.requests.push(req);
        const path = req.url.split('?')[0];
        if (path === '/api/ds/query') {
          return of(response(req, 200, { results: {} }));
        }
        if (!(path in this.answers)) {
          return throwError(() => response(req, 404, { error: 'no such resource' }));
        }
        return of(response(req, 200, this.answers[path]));
      },
    } as unknown as BackendSrv;
  }

  posts(): BackendSrvRequest[] {
    return this.requests.filter((r) => r.method === 'POST');
  }
}

function response(req: BackendSrvRequest, status: number, data: unknown) {
  return { data, status, ok: status < 300, headers: new Headers(), redirected: false, statusText: '', type: 'basic', url: req.url, config: req };
}

