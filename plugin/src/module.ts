import { DataSourcePlugin } from '@grafana/data';

import { ConfigEditor } from './components/ConfigEditor';
import { QueryEditor } from './components/QueryEditor';
import { DataSource } from './datasource';
import { AiopsOptions, AiopsQuery, AiopsSecureOptions } from './types';

export const plugin = new DataSourcePlugin<DataSource, AiopsQuery, AiopsOptions, AiopsSecureOptions>(DataSource)
  .setConfigEditor(ConfigEditor)
  .setQueryEditor(QueryEditor);
