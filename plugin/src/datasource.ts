import { CoreApp, DataSourceInstanceSettings, LegacyMetricFindQueryOptions, MetricFindValue, ScopedVars } from '@grafana/data';
import { DataSourceWithBackend, getTemplateSrv } from '@grafana/runtime';

import { AiopsOptions, AiopsQuery, DEFAULT_QUERY, TEXT_FIELDS } from './types';

/**
 * The aiops data source. Queries go to the plugin's backend (QueryData);
 * the query editor's look-ups are the backend's resource calls.
 */
export class DataSource extends DataSourceWithBackend<AiopsQuery, AiopsOptions> {
  constructor(instanceSettings: DataSourceInstanceSettings<AiopsOptions>) {
    super(instanceSettings);
    // Incident annotations: the annotation editor is the query editor, set to the annotations query type.
    this.annotations = {
      getDefaultQuery: () => ({ queryType: 'annotations' }),
    };
  }

  getDefaultQuery(app: CoreApp): Partial<AiopsQuery> {
    return app === CoreApp.Explore ? { queryType: 'logs' } : DEFAULT_QUERY;
  }

  /** Substitutes template variables in every string field of the query. */
  applyTemplateVariables(query: AiopsQuery, scopedVars: ScopedVars): AiopsQuery {
    const srv = getTemplateSrv();
    const out: AiopsQuery = { ...query };
    for (const key of TEXT_FIELDS) {
      const v = query[key];
      if (v) {
        out[key] = srv.replace(v, scopedVars);
      }
    }
    return out;
  }

  /** Leaves out hidden queries and trace queries without a trace id, which the backend would refuse. */
  filterQuery(query: AiopsQuery): boolean {
    if (query.hide) {
      return false;
    }
    if (query.queryType === 'traces') {
      return Boolean(query.traceId?.trim());
    }
    return true;
  }

  /**
   * The values of a template variable, from its query: services(),
   * runbooks(), labels() or label_values(LABEL). Other variables in the
   * query are substituted first.
   */
  async metricFindQuery(query: string, options?: LegacyMetricFindQueryOptions): Promise<MetricFindValue[]> {
    const q = getTemplateSrv().replace((query ?? '').trim(), options?.scopedVars);
    let values: string[];
    let m: RegExpExecArray | null;
    if (/^services\(\s*\)$/.test(q)) {
      values = await this.services();
    } else if (/^runbooks\(\s*\)$/.test(q)) {
      values = await this.runbooks();
    } else if (/^labels\(\s*\)$/.test(q)) {
      values = await this.labels();
    } else if ((m = /^label_values\(\s*([A-Za-z_][A-Za-z0-9_]*)\s*\)$/.exec(q))) {
      values = await this.labelValues(m[1]);
    } else {
      throw new Error(`unknown variable query ${JSON.stringify(query)}: want services(), runbooks(), labels() or label_values(LABEL)`);
    }
    return values.map((text) => ({ text, value: text }));
  }

  /** The services with spans. */
  services(): Promise<string[]> {
    return this.list('services');
  }

  /** The label names of the stored series. */
  labels(): Promise<string[]> {
    return this.list('labels');
  }

  /** The values of a label. */
  labelValues(label: string): Promise<string[]> {
    return this.list('label-values', { label });
  }

  /** The runbooks that ran for recent incidents. */
  runbooks(): Promise<string[]> {
    return this.list('runbooks');
  }

  private async list(path: string, params?: Record<string, string>): Promise<string[]> {
    const res: unknown = await this.getResource(path, params);
    return Array.isArray(res) ? res.filter((v): v is string => typeof v === 'string') : [];
  }
}
